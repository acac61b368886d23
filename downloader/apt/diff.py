"""What changed between two index snapshots, keyed as aptly keys its reference lists.

A package is (name, version, architecture) plus the sha256 of its file: the
same version with another file is a change, not the same package. Walking two
sorted key lists side by side is what aptly does; Python's dicts give the
same answer in one pass each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from downloader.apt.packages import PackageRecord, paused_gc

Key = tuple[str, str, str]


@dataclass
class Delta:
    added: list[Key] = field(default_factory=list)
    removed: list[Key] = field(default_factory=list)
    changed: list[Key] = field(default_factory=list)  # same name, version and arch; another file

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def reflist(records: Iterable[PackageRecord]) -> dict[Key, str]:
    """{(name, version, arch): sha256}, the snapshot form a diff compares."""
    with paused_gc():
        return {(r.name, r.version, r.arch): r.sha256 for r in records}


def diff(previous: dict[Key, str], current: dict[Key, str]) -> Delta:
    delta = Delta()
    for key, sha256 in current.items():
        before = previous.get(key)
        if before is None:
            delta.added.append(key)
        elif before != sha256:
            delta.changed.append(key)
    delta.removed = [key for key in previous if key not in current]
    delta.added.sort()
    delta.removed.sort()
    delta.changed.sort()
    return delta
