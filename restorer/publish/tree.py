"""Atomic publishing of a directory tree.

A new generation is built beside the live one (``<root>/.build-*``),
renamed to ``<root>/gen-<stamp>`` once complete, and made live by pointing
the ``<root>/current`` symlink at it with a rename (atomic on POSIX). A
client in the middle of a resolve sees either the old tree or the new one,
never a mixture; a build that fails (disk full, crash) leaves the live tree
untouched. Old generations are removed after a grace period, so a
download that started on one keeps working.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reservoir.blobs import fsync_dir, sync_filesystem
from reservoir.errors import ReservoirError

CURRENT = "current"
GENERATION_PREFIX = "gen-"
BUILD_PREFIX = ".build-"


class UnsafePath(ReservoirError):
    """A path a publisher was asked to write would leave its tree."""


def safe_join(tree: Path, *parts: str, final_link_ok: bool = False) -> Path:
    """`tree / parts...`, proven to stay inside `tree`; every publisher writes through it.

    Each part is one or more relative components; an absolute part, a `..`, an empty or `.`
    component, a NUL or a backslash is refused, and so is any component that already exists
    inside the tree as a symbolic link (writing through it could land anywhere), except the last
    one with `final_link_ok` (for replacing that link itself). The names come from bundles, so a
    refusal means a hostile or broken record that the schema let through.
    """
    components: list[str] = []
    for part in parts:
        if not isinstance(part, str) or not part or part.startswith("/") or "\0" in part or "\\" in part:
            raise UnsafePath(f"refusing to publish {str(part)[:80]!r} under {tree}: not a relative path")
        for component in part.split("/"):
            if component in ("", ".", ".."):
                raise UnsafePath(f"refusing to publish {part[:80]!r} under {tree}: it would leave the tree")
            components.append(component)
    path = str(tree)
    for i, component in enumerate(components):
        path = os.path.join(path, component)
        if final_link_ok and i == len(components) - 1:
            break
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            break  # nothing below exists yet: whatever is created there is created by us, inside
        if stat.S_ISLNK(mode):
            raise UnsafePath(f"refusing to publish {'/'.join(components)[:80]!r} under {tree}: {component!r} is a link")
    return tree.joinpath(*components)


def live_generation(root: Path) -> Path | None:
    """The directory `current` points at, or None before the first publish."""
    link = root / CURRENT
    try:
        target = os.readlink(link)
    except (FileNotFoundError, OSError):
        return None
    return root / target


@dataclass
class LiveLink:
    """`live_generation` for a server that asks on every request: one readlink, no new Path unless it moved."""

    root: Path
    _link: str = field(default="", init=False)
    _target: str = field(default="", init=False)
    _generation: Path | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._link = os.path.join(self.root, CURRENT)

    def generation(self) -> Path | None:
        try:
            target = os.readlink(self._link)
        except OSError:
            return None
        if target != self._target or self._generation is None:
            self._target, self._generation = target, self.root / target
        return self._generation


def _new_generation_name() -> str:
    # Sortable by creation: the nanoseconds keep order within one second.
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9))
    return f"{GENERATION_PREFIX}{stamp}.{now % 10**9:09d}-{uuid.uuid4().hex[:4]}"


def swap_current(root: Path, generation: Path) -> None:
    tmp_link = root / f".{CURRENT}.{uuid.uuid4().hex[:8]}"
    os.symlink(generation.name, tmp_link)
    os.replace(tmp_link, root / CURRENT)
    fsync_dir(root)


def publish_tree(root: Path, build: Callable[[Path], None], *, keep: int = 3, grace_s: float = 600.0) -> Path:
    """Build a generation with `build(dir)` and make it live; returns it.

    If `build` raises, its partial directory is removed and the exception
    propagates with the live tree unchanged.
    """
    root.mkdir(parents=True, exist_ok=True)
    remove_abandoned_builds(root)
    staging = root / f"{BUILD_PREFIX}{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        build(staging)
        # Its pages must be on disk before it goes live: after a power cut the
        # live tree must not hold empty or torn index files. One syncfs covers
        # every file of the build.
        sync_filesystem(staging)
        generation = root / _new_generation_name()
        os.rename(staging, generation)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    swap_current(root, generation)
    prune_generations(root, keep=keep, grace_s=grace_s)
    return generation


def remove_abandoned_builds(root: Path, older_than_s: float = 3600.0) -> None:
    """Remove staging folders of publishers that were killed mid-build."""
    cutoff = time.time() - older_than_s
    for path in root.glob(f"{BUILD_PREFIX}*"):
        try:
            if path.stat().st_mtime <= cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except FileNotFoundError:
            pass


def prune_generations(root: Path, *, keep: int, grace_s: float) -> None:
    """Keep the `keep` newest generations, and any younger than `grace_s`."""
    live = live_generation(root)
    generations = sorted(root.glob(f"{GENERATION_PREFIX}*"), key=lambda p: p.name, reverse=True)
    cutoff = time.time() - grace_s
    for old in generations[keep:]:
        if old == live:
            continue
        try:
            if old.stat().st_mtime <= cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:
            pass
