"""How generations of one tree share their unchanged pages: the cost of a publish is the change, not the site.

One ecosystem's tree (``trees/pypi``)::

    current -> gen-<stamp>                 the live generation, swapped by one rename
    gen-<stamp>/                           one generation: a few hundred entries whatever the site's size
      generation.json                      shard -> node, its aggregates, its base, what it stopped using
      .shards/<hh> -> ../../.objects/<node>
      .agg/simple/index.json ...           the aggregate pages, written whole by each generation
      simple -> ../simple                  one link per top-level folder of the served namespace
      files -> ../files
    .objects/<node>/                       a shard: <entry> -> ../<page> per leaf, .node.json, .files.json
    .objects/<page>/                       one leaf's pages (index.html, index.json, .gz twins)
    .dropped/<gen>.json                    what that generation stopped using, until its base is pruned
    simple/<project> -> ../current/.shards/<hh>/<entry>      made once, when the leaf first appears
    simple/index.json -> ../current/.agg/simple/index.json
    files/<sha256>/<filename>              package files, hard links to blobs, removed after the grace period

A leaf (a directory of pages, ``simple/numpy``) lives in shard ``hh`` (the
first hex digits of its key's sha256). Nodes and pages are content-addressed
and never change once written, so a new generation reuses every shard node
the change leaves alone and rewrites only the shards it touches (one node of
about site/256 entries each) and the leaves that changed. Every served path
resolves through ``current`` at the moment it is opened, so nginx and the
server read the same static files as before, and a publish still goes live
in one atomic rename. Objects and files a generation stopped using are
deleted once the generation before it is pruned (after its grace period)
and no surviving generation uses them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from restorer.publish.tree import CURRENT, GENERATION_PREFIX, UnsafePath, safe_join

OBJECTS = ".objects"
SHARDS = ".shards"
AGGREGATES = ".agg"
STATE = "generation.json"
DROPPED = ".dropped"  # <gen>.json: what each generation stopped using, until collected
NODE_INDEX = ".node.json"
NODE_FILES = ".files.json"
SHARD_HEX = 2  # 256 shards: a generation holds 256 links, a touched shard about site/256 entries
RESERVED_TOP = (OBJECTS, SHARDS, AGGREGATES, DROPPED, CURRENT, STATE)


def shard_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:SHARD_HEX]


def entry_name(key: str) -> str:
    """A leaf key as one file name inside its shard node."""
    return quote(key, safe="")


@dataclass(frozen=True)
class NodeEntry:
    page: str  # the page object's id
    summary: str  # what the aggregates need of the leaf
    files: Mapping[str, str]  # tree-relative path -> blob sha256


@dataclass
class GenerationState:
    shards: dict[str, str] = field(default_factory=dict)  # hh -> node id
    aggregates: list[str] = field(default_factory=list)
    base: str | None = None  # the generation this one was built from
    # What the base used and this one does not: ["node", hh, id], ["page", key, id], ["file", path, sha256].
    dropped: list[list[str]] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps(
            {"shards": self.shards, "aggregates": self.aggregates, "base": self.base, "dropped": self.dropped},
            sort_keys=True,
        ).encode()


def read_state(generation: Path | None) -> GenerationState | None:
    """The state of a generation in this layout, or None (none yet, or a generation of the older whole-tree layout)."""
    if generation is None:
        return None
    try:
        raw = json.loads((generation / STATE).read_bytes())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return GenerationState(dict(raw["shards"]), list(raw["aggregates"]), raw.get("base"), list(raw.get("dropped", [])))


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:40]


@dataclass
class ObjectStore:
    """Content-addressed page and node folders under `<root>/.objects`, each written once and renamed into place."""

    root: Path

    @property
    def folder(self) -> Path:
        return self.root / OBJECTS

    def path(self, ident: str) -> Path:
        return self.folder / ident

    def _install(self, ident: str, fill: Callable[[Path], None]) -> str:
        final = self.path(ident)
        if final.is_dir():
            return ident
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".tmp-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        try:
            fill(tmp)
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not final.is_dir():
                raise
        return ident

    def write_page(self, key: str, pages: Mapping[str, bytes], links: Mapping[str, str] | None = None) -> str:
        """A leaf's page object; `links` (name -> tree-relative folder) are symbolic links out of it.

        A name is a file name, or relative names below the leaf (`binary-amd64/Packages`) where
        the ecosystem's clients ask for its pages in subfolders; no part starts with a dot.
        """
        links = links or {}
        names = sorted(pages)
        for name in [*names, *links]:
            if not name or any(not part or part.startswith(".") for part in name.split("/")):
                raise UnsafePath(f"refusing to publish page {name[:80]!r} of {key[:80]!r}: not a plain file name")
        for target in links.values():
            top_folder(target)
            safe_join(self.root, target)
        ident = "p" + _digest([
            key.encode(),
            *(part for name in names for part in (name.encode(), pages[name])),
            *(part for name in sorted(links) for part in (b"link:" + name.encode(), links[name].encode())),
        ])

        def fill(tmp: Path) -> None:
            for name in names:
                path = safe_join(tmp, name)
                if "/" in name:
                    path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(pages[name])
            for name in sorted(links):
                path = safe_join(tmp, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                # From .objects/<page>/<name> back up to the tree's root.
                os.symlink("../" * (name.count("/") + 2) + links[name], path)

        return self._install(ident, fill)

    def write_node(self, shard: str, entries: Mapping[str, NodeEntry]) -> str:
        keys = sorted(entries)
        index = {key: [entries[key].page, entries[key].summary] for key in keys}
        files = {key: dict(sorted(entries[key].files.items())) for key in keys}
        index_raw = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
        files_raw = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
        ident = "n" + _digest([shard.encode(), index_raw, files_raw])

        def fill(tmp: Path) -> None:
            for key in keys:
                os.symlink(f"../{entries[key].page}", safe_join(tmp, entry_name(key)))
            (tmp / NODE_INDEX).write_bytes(index_raw)
            (tmp / NODE_FILES).write_bytes(files_raw)

        return self._install(ident, fill)

    def node_index(self, node: str) -> dict[str, list[str]]:
        """key -> [page id, summary]."""
        return json.loads((self.path(node) / NODE_INDEX).read_bytes())

    def node_entries(self, node: str) -> dict[str, NodeEntry]:
        index = self.node_index(node)
        files = json.loads((self.path(node) / NODE_FILES).read_bytes())
        return {key: NodeEntry(page, summary, files.get(key, {})) for key, (page, summary) in index.items()}

    def remove(self, ident: str) -> None:
        shutil.rmtree(self.path(ident), ignore_errors=True)


def ensure_link(root: Path, relative: str, target: str, made: set[Path] | None = None) -> None:
    """Make `<root>/<relative>` the symbolic link `target`: created once, found in place by later publishes.

    `made` remembers the parent folders already proven and created, so a batch costs one
    call per link.
    """
    folder, _, name = relative.rpartition("/")
    parent = safe_join(root, folder) if folder else root
    path = safe_join(parent, name, final_link_ok=True)
    if made is None or parent not in made:
        parent.mkdir(parents=True, exist_ok=True)
        if made is not None:
            made.add(parent)
    try:
        os.symlink(target, path)
        return
    except FileExistsError:
        pass
    try:
        if os.readlink(path) == target:
            return
    except OSError:
        raise UnsafePath(f"refusing to publish {relative[:80]!r} under {root}: something else is already there") from None
    tmp = parent / f".link-{uuid.uuid4().hex[:8]}"
    os.symlink(target, tmp)
    os.replace(tmp, path)


def leaf_link_target(key: str) -> str:
    depth = key.count("/")
    return "../" * depth + f"{CURRENT}/{SHARDS}/{shard_of(key)}/{entry_name(key)}"


def aggregate_link_target(relative: str) -> str:
    depth = relative.count("/")
    return "../" * depth + f"{CURRENT}/{AGGREGATES}/{relative}"


def top_folder(relative: str) -> str:
    top = relative.split("/", 1)[0]
    if "/" not in relative or top in RESERVED_TOP or top.startswith((".", GENERATION_PREFIX)):
        raise UnsafePath(f"refusing to publish {relative[:80]!r}: a page must lie in a folder, not named like the tree's own")
    return top


def generations(root: Path) -> dict[str, Path]:
    return {p.name: p for p in root.glob(f"{GENERATION_PREFIX}*") if p.is_dir()}

