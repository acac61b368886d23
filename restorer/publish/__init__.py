"""Publishing the site's repository trees, in proportion to what changed.

Each ecosystem has one publisher, discovered through the entry-point group
``reservoir.publishers`` (``pypi = "restorer.publish.pypi:PypiPublisher"``);
APT, YUM and CRAN plug in the same way. A publisher knows its pages; this
module, which names no ecosystem, turns a change set into dirty leaves, has
only those rendered, shares everything else with the live generation
(``layout.py``), renders the aggregates, and swaps the new generation in
atomically (``tree.py``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session

from reservoir.blobs import BlobStore
from reservoir.context import AppContext
from reservoir.errors import ReservoirError
from restorer.publish.layout import (
    AGGREGATES,
    DROPPED,
    SHARDS,
    STATE,
    GenerationState,
    NodeEntry,
    ObjectStore,
    aggregate_link_target,
    ensure_link,
    generations,
    leaf_link_target,
    read_state,
    shard_of,
    top_folder,
)
from restorer.publish.tree import CURRENT, live_generation, publish_tree, safe_join

log = logging.getLogger(__name__)
PUBLISHERS_GROUP = "reservoir.publishers"
PUBLISH_THREADS = 4
# Leaves rendered per batch: bounds memory on a full rebuild of a large site.
RENDER_BATCH = 2000
# An object no generation uses is swept by `--full` once this old (a build may still be writing it).
ORPHAN_AGE_S = 3600.0
# Generations kept beside the live one, and how long a replaced one stays for clients mid-download.
KEEP_GENERATIONS = 3
GRACE_S = 600.0


@dataclass(frozen=True)
class ReleaseRef:
    """A release that an import added, changed or removed: what a publisher needs to find its leaves."""

    channel: str
    kind: str  # the channel's kind: which publisher's pages it is on
    name: str
    version: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Leaf:
    """One rendered leaf: a directory of pages that changes when one of its releases does."""

    key: str  # its folder in the served tree, "simple/numpy"; leaves never nest
    pages: Mapping[str, bytes]  # file name in that folder -> content (compressed twins included)
    files: Mapping[str, str]  # tree-relative path of each package file the pages link to -> blob sha256
    summary: str  # what the aggregates need of this leaf (PyPI: the display name), kept beside it
    # Name inside the leaf -> a tree-relative folder outside every leaf that the name links to
    # (APT's `by-hash`, which must outlive the generation that wrote it).
    links: Mapping[str, str] = field(default_factory=dict)


class Publisher(Protocol):
    """One ecosystem's client-facing tree, under `trees/<kind>/`, for channels of that kind.

    The orchestration calls, in this order, on a publish:

    - ``bind(app)``, only if the publisher has it: the site's context, for a
      publisher that needs more than the catalog (APT signs with the site's key).
    - ``pages_for(release)`` at import time, for every release added, changed or
      removed: the keys of the leaves the release appears on. A key is a folder
      of the served tree ("simple/numpy"; for APT a `binary-<arch>` folder of a
      suite), it never lies inside another leaf, and its first component is the
      top-level folder clients see. It must not need the database: a removed
      release is gone from it by then (`release.meta` holds its record).
    - ``leaf_keys(session)`` on a full rebuild only: every key the catalog publishes.
    - ``render_leaves(session, blobs, keys)``: a `Leaf` for each of `keys` that
      still has something to publish; a key left out is removed from the tree.
      Everything is read from the catalog (the releases, not the change), so the
      same keys render the same bytes incrementally or in a full rebuild.
    - ``render_aggregates(summaries)``: the pages computed from every leaf
      (PyPI's root index; APT's Release and InRelease, signed here), given each
      leaf's `summary`; tree-relative path -> content. Written whole by every
      generation, so keep the summaries small.
    - ``files_in_use(session, files)``: of the package files (path -> sha256)
      that leaves stopped naming, those the catalog still publishes elsewhere;
      the others are deleted once no generation within its grace period needs them.

    Paths are written through `safe_join`; page names are plain file names
    (no `/`, not starting with `.`).
    """

    kind: str

    def pages_for(self, release: ReleaseRef) -> Iterable[str]: ...

    def leaf_keys(self, session: Session) -> Iterable[str]: ...

    def render_leaves(self, session: Session, blobs: BlobStore, keys: Sequence[str]) -> Iterable[Leaf]: ...

    def render_aggregates(self, summaries: Mapping[str, str]) -> Mapping[str, bytes]: ...

    def files_in_use(self, session: Session, files: Mapping[str, str]) -> set[str]: ...


def publishers() -> tuple[Publisher, ...]:
    """Every installed publisher, in entry-point name order."""
    found = sorted(entry_points(group=PUBLISHERS_GROUP), key=lambda ep: ep.name)
    return tuple(ep.load()() for ep in found)


@dataclass(frozen=True)
class PublishResult:
    kind: str
    generation: Path
    projects: int  # leaves in the generation
    rendered: int = 0  # leaves rendered for it
    full: bool = True


def tree_root(app: AppContext, kind: str) -> Path:
    return app.home.trees_dir / kind


def publish_site(app: AppContext) -> list[PublishResult]:
    """Rebuild every ecosystem's tree from the whole catalog and swap it in (`reservoir publish --full`)."""
    return publish_changes(app, {publisher.kind: None for publisher in publishers()})


def publish_changes(app: AppContext, dirty: Mapping[str, Collection[str] | None]) -> list[PublishResult]:
    """Publish, for each kind in `dirty`, its dirty leaf keys (None: all of them, from the catalog)."""
    results = []
    with app.db.session() as session:
        for publisher in publishers():
            if publisher.kind not in dirty:
                continue
            keys = dirty[publisher.kind]
            bind = getattr(publisher, "bind", None)
            if bind is not None:
                bind(app)  # a publisher that signs finds the site's key through the home
            results.append(publish_kind(tree_root(app, publisher.kind), publisher, session, app.blobs, keys))
    return results


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One publish of a tree at a time (an import and `serve` may both catch up)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


Shards = dict[str, dict[str, NodeEntry]]  # hh -> leaf key -> its entry


def publish_kind(
    root: Path,
    publisher: Publisher,
    session: Session,
    blobs: BlobStore,
    keys: Collection[str] | None,
    *,
    keep: int | None = None,
    grace_s: float | None = None,
) -> PublishResult:
    """One new generation of `root`: the leaves `keys` re-rendered (None: every leaf), the rest shared with the live one."""
    with _locked(root):
        live = live_generation(root)
        base = read_state(live)
        full = keys is None or base is None
        store = ObjectStore(root)
        todo = sorted(set(publisher.leaf_keys(session) if full else keys or ()))
        # The shards the change touches, as the live generation has them (a full rebuild: all of them).
        before: Shards = {}
        if base is not None:
            touched = base.shards if full else {shard_of(key) for key in todo}
            before = {hh: store.node_entries(base.shards[hh]) for hh in touched if hh in base.shards}
        shards: Shards = {} if full else {hh: dict(entries) for hh, entries in before.items()}
        tops: set[str] = set()
        rendered = _render(root, publisher, session, blobs, store, todo, shards, tops)
        if full:
            shards.update((hh, {}) for hh in before if hh not in shards)
        state = _next_state(store, base, live, before, shards)
        summaries: dict[str, str] = {}
        for hh in sorted(state.shards):
            summaries.update((key, summary) for key, (_, summary) in store.node_index(state.shards[hh]).items())
        aggregates = dict(publisher.render_aggregates(summaries))
        state.aggregates = sorted(aggregates)
        links = {key: leaf_link_target(key) for key in (summaries if full else todo) if key in summaries}
        links.update((relative, aggregate_link_target(relative)) for relative in state.aggregates)
        tops.update(top_folder(relative) for relative in links)
        if live is not None and base is not None:
            tops.update(p.name for p in live.iterdir() if p.is_symlink())
        _ensure_links(root, links)
        generation = publish_tree(
            root,
            lambda tree: _fill_generation(tree, root, store, state, aggregates, tops),
            keep=KEEP_GENERATIONS if keep is None else keep,
            grace_s=GRACE_S if grace_s is None else grace_s,
        )
        record_dropped(root, generation, state)
        collect_dropped(root, store, publisher, session)
        if full and base is not None:
            sweep_orphans(root, store)
            sweep_dangling_links(root, tops, set(summaries) | set(state.aggregates))
    log.info(
        "published %s: %d leaves (%d rendered%s) in %s",
        publisher.kind, len(summaries), rendered, ", full" if full else "", generation.name,
    )
    return PublishResult(publisher.kind, generation, len(summaries), rendered, full)


def _render(
    root: Path, publisher: Publisher, session: Session, blobs: BlobStore, store: ObjectStore,
    todo: list[str], shards: Shards, tops: set[str],
) -> int:
    """Render `todo` in batches into page objects and their shards' entries; returns how many leaves remain."""
    rendered = 0
    for start in range(0, len(todo), RENDER_BATCH):
        batch = todo[start : start + RENDER_BATCH]
        leaves = list(publisher.render_leaves(session, blobs, batch))
        unknown = {leaf.key for leaf in leaves} - set(batch)
        if unknown:
            raise ReservoirError(f"the {publisher.kind} publisher rendered leaves it was not asked for: {sorted(unknown)[:3]}")
        rendered += len(leaves)
        known = {key: entry.files for key in batch if (entry := shards.get(shard_of(key), {}).get(key)) is not None}
        written = _write_leaves(root, store, blobs, leaves, tops, known)
        for key in batch:
            entries = shards.setdefault(shard_of(key), {})
            if key in written:
                entries[key] = written[key]
            else:
                entries.pop(key, None)
    return rendered


def _next_state(store: ObjectStore, base: GenerationState | None, live: Path | None, before: Shards, shards: Shards) -> GenerationState:
    """The new generation's shard table (a node written per changed shard) and what it stops using."""
    state = GenerationState(shards=dict(base.shards) if base is not None else {}, base=live.name if live is not None else None)
    for hh, entries in shards.items():
        if entries:
            state.shards[hh] = store.write_node(hh, entries)
        else:
            state.shards.pop(hh, None)
        node = base.shards.get(hh) if base is not None else None
        if node is not None and node != state.shards.get(hh):
            state.dropped.append(["node", hh, node])
        for key, entry in before.get(hh, {}).items():
            now = entries.get(key)
            if now is None or now.page != entry.page:
                state.dropped.append(["page", key, entry.page])
            kept = now.files if now is not None else {}
            state.dropped += [["file", path, sha] for path, sha in entry.files.items() if kept.get(path) != sha]
    return state


def _fill_generation(
    tree: Path, root: Path, store: ObjectStore, state: GenerationState, aggregates: Mapping[str, bytes], tops: set[str]
) -> None:
    """The generation's own few entries: shard links, aggregate pages, top-level links, its state."""
    (tree / SHARDS).mkdir()
    for hh, node in sorted(state.shards.items()):
        os.symlink(f"../../{store.folder.name}/{node}", tree / SHARDS / hh)
    for relative, content in aggregates.items():
        path = safe_join(tree, AGGREGATES, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for top in sorted(tops):
        safe_join(root, top).mkdir(exist_ok=True)
        os.symlink(f"../{top}", safe_join(tree, top))
    (tree / STATE).write_bytes(state.to_json())


def _ensure_links(root: Path, links: Mapping[str, str]) -> None:
    """The persistent links into `current` (one call each where they exist already or are new)."""
    made: set[Path] = set()
    for relative in sorted(links):  # folders first, so the threads below never race to make them
        parent = relative.rpartition("/")[0]
        if parent and (root / parent) not in made:
            safe_join(root, parent).mkdir(parents=True, exist_ok=True)
            made.add(root / parent)
    with ThreadPoolExecutor(max_workers=PUBLISH_THREADS, thread_name_prefix="publish") as pool:
        list(pool.map(lambda item: ensure_link(root, item[0], item[1], made), sorted(links.items())))


def _write_leaves(root: Path, store: ObjectStore, blobs: BlobStore, leaves: list[Leaf], tops: set[str],
                  known: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, NodeEntry]:
    """Each leaf's page object, and its package files into the shared `files` folders (a path names one content forever).

    `known`: the files each leaf's live entry names, which are in place (a path names one content,
    and a file leaves only once no generation names it), so they are not looked at again.
    """
    tops.update(top_folder(relative) for leaf in leaves for relative in leaf.files)
    known = known or {}
    files = sorted({(relative, sha) for leaf in leaves for relative, sha in leaf.files.items()
                    if known.get(leaf.key, {}).get(relative) != sha})

    def link(part: list[tuple[str, str]]) -> None:
        for relative, sha in part:
            dest = safe_join(root, relative)
            if not dest.is_file():
                blobs.link_into(sha, dest)

    def write(leaf: Leaf) -> NodeEntry:
        return NodeEntry(store.write_page(leaf.key, leaf.pages, leaf.links), leaf.summary, dict(leaf.files))

    # A file or a leaf costs a dozen file-system calls and little Python: threads overlap their
    # waiting (an APT leaf names thousands of files), and list() re-raises the first failure.
    with ThreadPoolExecutor(max_workers=PUBLISH_THREADS, thread_name_prefix="publish") as pool:
        list(pool.map(link, [files[i :: PUBLISH_THREADS] for i in range(PUBLISH_THREADS)]))
        return dict(zip((leaf.key for leaf in leaves), pool.map(write, leaves), strict=True))


def _uses(store: ObjectStore, state: GenerationState, kind: str, position: str, ident: str, cache: dict[str, dict[str, list[str]]]) -> bool:
    if kind == "node":
        return state.shards.get(position) == ident
    node = state.shards.get(shard_of(position))
    if node is None:
        return False
    if node not in cache:
        try:
            cache[node] = store.node_index(node)
        except FileNotFoundError:
            cache[node] = {}
    return cache[node].get(position, [None])[0] == ident


def record_dropped(root: Path, generation: Path, state: GenerationState) -> None:
    """Keep what `generation` stopped using beside the tree, so it is collected even if pruning takes both generations at once."""
    if not state.dropped:
        return
    folder = root / DROPPED
    folder.mkdir(exist_ok=True)
    (folder / f"{generation.name}.json").write_bytes(json.dumps({"base": state.base, "dropped": state.dropped}).encode())


def collect_dropped(root: Path, store: ObjectStore, publisher: Publisher, session: Session) -> None:
    """Delete what a generation stopped using once its base is pruned and no surviving generation uses it."""
    folder = root / DROPPED
    if not folder.is_dir():
        return
    present = generations(root)
    alive = [s for s in (read_state(path) for path in present.values()) if s is not None]
    cache: dict[str, dict[str, list[str]]] = {}
    for record in sorted(folder.glob("*.json")):
        raw = json.loads(record.read_bytes())
        if raw["base"] in present:
            continue  # a client may still be reading the base: wait for its grace period
        files: dict[str, str] = {}
        for kind, position, ident in raw["dropped"]:
            if kind == "file":
                files[position] = ident
            elif not any(_uses(store, s, kind, position, ident, cache) for s in alive):
                store.remove(ident)
        if files:
            for relative in sorted(set(files) - publisher.files_in_use(session, files)):
                path = safe_join(root, relative)
                path.unlink(missing_ok=True)
                try:
                    path.parent.rmdir()
                except OSError:
                    pass  # other files still live there
        record.unlink()


def sweep_orphans(root: Path, store: ObjectStore, older_than_s: float = ORPHAN_AGE_S) -> None:
    """Objects no generation uses (a build killed before its swap): walked on a full rebuild only, it costs the site."""
    used: set[str] = set()
    for state in (read_state(p) for p in generations(root).values()):
        if state is None:
            continue
        for node in state.shards.values():
            used.add(node)
            try:
                used.update(page for page, _ in store.node_index(node).values())
            except FileNotFoundError:
                pass
    if not store.folder.is_dir():
        return
    cutoff = time.time() - older_than_s
    for entry in os.scandir(store.folder):
        if entry.name in used:
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime <= cutoff:
                store.remove(entry.name)
        except FileNotFoundError:
            pass


def sweep_dangling_links(root: Path, tops: Collection[str], served: set[str]) -> None:
    """The links of leaves no longer published (each answers 404 meanwhile): walked on a full rebuild only."""
    ours = (f"{CURRENT}/{SHARDS}/", f"{CURRENT}/{AGGREGATES}/")
    pending = [top for top in tops if (root / top).is_dir()]
    while pending:
        relative = pending.pop()
        with os.scandir(root / relative) as entries:
            for entry in entries:
                path = f"{relative}/{entry.name}"
                if entry.is_dir(follow_symlinks=False):
                    pending.append(path)
                elif entry.is_symlink() and path not in served and any(mark in os.readlink(entry.path) for mark in ours):
                    os.unlink(entry.path)


__all__ = [
    "Leaf",
    "Publisher",
    "PublishResult",
    "ReleaseRef",
    "live_generation",
    "publish_changes",
    "publish_kind",
    "publish_site",
    "publishers",
    "tree_root",
]
