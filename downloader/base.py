"""The shapes every ecosystem adapter shares.

An adapter turns a channel's options and its upstream into a `Selection`:
the releases to mirror, each with the files to store. The hub diffs that
against the releases its catalog holds and fetches only the new files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class UpstreamFile:
    """One file an upstream offers for a release."""

    filename: str
    url: str
    sha256: str
    size: int | None = None
    # Ecosystem fields that go to Artifact.meta (see docs/catalog.md).
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class SelectedRelease:
    """A release chosen for mirroring, with the files to store."""

    name: str  # normalized
    display_name: str
    version: str
    files: list[UpstreamFile]
    # Release.meta fields (see docs/catalog.md).
    meta: dict[str, Any] = field(default_factory=dict)
    declared_license: str = ""
    # Blobs already stored for a file while selecting: {filename: {role: sha256}}.
    aux_blobs: dict[str, dict[str, str]] = field(default_factory=dict)
    # Why this release cannot be mirrored completely (e.g. a hash mismatch).
    failure: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass
class Selection:
    """What an adapter selected from its upstream for one channel."""

    releases: dict[str, SelectedRelease] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # How many upstream files the adapter downloaded while selecting
    # (e.g. wheels read for their metadata); they are stored blobs already.
    downloaded_files: int = 0
    downloaded_bytes: int = 0

    def add(self, release: SelectedRelease) -> None:
        self.releases[release.key] = release

    def snapshot(self) -> dict[str, list[str]]:
        """The Snapshot.selection form: {"name==version": [sha256, ...]}."""
        return {key: sorted(f.sha256 for f in rel.files) for key, rel in sorted(self.releases.items())}
