"""The shapes every ecosystem adapter shares, and how the hub finds adapters.

An adapter turns a channel's options and its upstream into a `Selection`:
the releases to mirror, each with the files to store, plus an opaque cursor
(serial, Release digest) saying which upstream state it read. The hub diffs
that against the releases its catalog holds and asks the adapter to fetch
and verify only the new files.

An ecosystem registers one `Ecosystem` object under the `reservoir.adapters`
entry point group (`pypi = "downloader.pypi:ECOSYSTEM"`): its `channel add`
options, the default upstream from the host's configuration, its caches'
load and save hooks, an `Adapter` for one sync, and its vetting hooks. The
hub and the vetters name no ecosystem; they ask `ecosystem(kind)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from reservoir.errors import ConfigError, ReservoirError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from reservoir.blobs import BlobBatch, BlobSink, BlobStore

ADAPTER_GROUP = "reservoir.adapters"


@dataclass(frozen=True)
class UpstreamFile:
    """One file an upstream offers for a release."""

    filename: str
    url: str
    sha256: str
    size: int | None = None
    # Ecosystem fields that go to Artifact.meta (see docs/catalog.md).
    meta: Mapping[str, Any] = field(default_factory=dict)
    # Blobs derived from the file that a complete artifact records in meta["aux_blobs"] (a wheel's "metadata").
    aux_roles: tuple[str, ...] = ()


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
    # The upstream state read (a serial, the digest of every InRelease): the hub keeps it per channel.
    cursor: str | None = None

    def add(self, release: SelectedRelease) -> None:
        self.releases[release.key] = release

    def snapshot(self) -> dict[str, list[str]]:
        """The Snapshot.selection form: {"name==version": [sha256, ...]}."""
        return {key: sorted(f.sha256 for f in rel.files) for key, rel in sorted(self.releases.items())}


# ---------------------------------------------------------------- fetching


@dataclass(frozen=True)
class FetchPolicy:
    """How hard a sync pulls on its upstream: requests in flight, retries, timeouts."""

    concurrency: int = 48
    attempts: int = 4
    backoff_s: float = 0.5
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 60.0


@dataclass
class StoreOutcome:
    """One file an adapter was asked to store: an error (nothing stored) or its derived blobs."""

    filename: str
    sha256: str
    error: str = ""
    aux_blobs: dict[str, str] = field(default_factory=dict)


class Download(Protocol):
    """A transport that streams a URL into the blob store, checking sha256 and size on the way."""

    async def download(self, what: str, url: str, blobs: BlobSink, sha256: str | None,
                       size: int | None = None) -> Any: ...


# How much a sync downloads between two commits of its blobs: what a kill may cost it.
COMMIT_EVERY_FILES = 256
COMMIT_EVERY_BYTES = 512 << 20


async def store_files(transport: Download, blobs: BlobStore, files: Sequence[UpstreamFile],
                      on_done: Callable[[int], None]) -> list[StoreOutcome]:
    """Fetch `files` into the blob store, each checked against its sha256 and size (a mismatch stores nothing).

    Blobs are committed in groups (one filesystem sync per group); a sync
    killed midway keeps the groups committed before.
    """
    with blobs.batch() as batch:
        outcomes = await asyncio.gather(*(_store_one(transport, f, on_done, batch) for f in files))
        await asyncio.to_thread(batch.commit)
    return list(outcomes)


async def _store_one(transport: Download, file: UpstreamFile, on_done: Callable[[int], None],
                     batch: BlobBatch) -> StoreOutcome:
    outcome = StoreOutcome(file.filename, file.sha256)
    try:
        stored = await transport.download(file.filename, file.url, batch, file.sha256, file.size)
        if len(batch) >= COMMIT_EVERY_FILES or batch.waiting_bytes >= COMMIT_EVERY_BYTES:
            await asyncio.to_thread(batch.commit)
        on_done(int(getattr(stored, "size", 0)))
    except ReservoirError as exc:
        outcome.error = exc.message
        on_done(0)
    return outcome


# ---------------------------------------------------------------- channels and adapters


@dataclass(frozen=True)
class ChannelSpec:
    """A channel as an adapter sees it: Channel.upstream and Channel.options as stored."""

    id: int
    name: str
    kind: str
    upstream: str
    options: Mapping[str, Any]


@dataclass(frozen=True)
class ChannelSetup:
    """What `channel add` stores for a new channel, and the line it prints about it."""

    upstream: str
    options: dict[str, Any]
    summary: str


@dataclass(frozen=True)
class OptionSpec:
    """One `channel add` option an ecosystem reads (turned into a click option by the hub).

    Two ecosystems may declare the same option (`--package`, `--latest`):
    the hub shows it once. `name` is the key `Ecosystem.configure` reads.
    """

    flags: tuple[str, ...]
    name: str
    help: str
    multiple: bool = False
    is_flag: bool = False
    default: Any = None
    type: Any = None  # a click type, or a Python type click understands
    show_default: bool = False


@dataclass
class AdapterState:
    """Per-channel key/value JSON the hub keeps for an adapter between syncs (table hub_adapter_state)."""

    values: dict[str, Any] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    # What a `CursorProbe` fetched for this sync only (never stored): the full sync reuses it, not asking twice.
    fetched: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def put(self, key: str, value: Any) -> None:
        if self.values.get(key) != value or key not in self.values:
            self.values[key] = value
            self.changed.add(key)


class Adapter(Protocol):
    """One sync of one channel; an async context manager holding its connections."""

    @property
    def downloaded_files(self) -> int: ...

    @property
    def downloaded_bytes(self) -> int: ...

    async def __aenter__(self) -> Adapter: ...

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None: ...

    async def select(self, on_progress: Callable[[], None]) -> Selection:
        """Read the upstream (verified) into a Selection with its cursor; raises ReservoirError, changing nothing."""
        ...

    async def store(self, files: list[UpstreamFile], on_done: Callable[[int], None]) -> list[StoreOutcome]:
        """Fetch and verify `files` into the blob store; a file that fails is reported, never stored."""
        ...


class Ecosystem(Protocol):
    """What an ecosystem gives the hub and its vetters (registered under `reservoir.adapters`)."""

    kind: str
    progress_unit: str  # what `select` counts in its progress bar ("page", "index")

    def cli_options(self) -> list[OptionSpec]: ...

    def default_upstream(self) -> str:
        """The upstream the host's own client uses (pip's index, the apt sources); ConfigError if none."""
        ...

    def configure(self, values: Mapping[str, Any]) -> ChannelSetup:
        """`channel add`'s values (every OptionSpec name, and "upstream") checked into what a channel stores."""
        ...

    def describe(self, upstream: str, options: Mapping[str, Any]) -> list[str]:
        """The lines `channel ls` prints about a channel's options."""
        ...

    def load_caches(self, session: Session, channel: ChannelSpec, state: AdapterState) -> Any: ...

    def save_caches(self, session: Session, channel: ChannelSpec, caches: Any, state: AdapterState) -> None:
        """Write what a sync learned: into `state`, or the ecosystem's own tables in `session`."""
        ...

    def open(self, channel: ChannelSpec, blobs: BlobStore, caches: Any, policy: FetchPolicy,
             scratch: Path) -> Adapter: ...

    # Optional: `async def upstream_cursor(channel, state, policy, scratch) -> str | None` (see `CursorProbe`).

    def license_files(self, filename: str, stream: BinaryIO) -> list[Any]:
        """The license-bearing files (`licenses.files.LicenseFile`) of one stored artifact."""
        ...

    def declaration(self, meta: Mapping[str, Any], files: list[Any]) -> Any | None:
        """The release's declared license (`licenses.declared.Declared`) from its meta and license files."""
        ...


class CursorProbe(Protocol):
    """An ecosystem's optional cheapest look at its upstream, asked before any cache is loaded.

    It returns the cursor a full sync would record now (what `Selection.cursor`
    would be), from the fewest conditional requests (a root index, each suite's
    InRelease) and what `state` kept; None when it cannot tell cheaply (the
    hub then runs the whole sync). It never verifies or stores anything: the
    hub only compares it to the cursor of the last complete sync, whose
    content was verified then.
    """

    async def upstream_cursor(self, channel: ChannelSpec, state: AdapterState, policy: FetchPolicy,
                              scratch: Path) -> str | None: ...


def cursor_probe(eco: Ecosystem) -> CursorProbe | None:
    """The ecosystem's `upstream_cursor` hook, if it has one."""
    return eco if callable(getattr(eco, "upstream_cursor", None)) else None  # type: ignore[return-value]


@lru_cache(maxsize=1)
def _discovered() -> tuple[tuple[str, Any], ...]:
    # Installed entry points do not change while a process runs.
    return tuple((ep.name, ep) for ep in sorted(entry_points(group=ADAPTER_GROUP), key=lambda ep: ep.name))


def installed_kinds() -> list[str]:
    """The channel kinds this installation has an adapter for."""
    return [name for name, _ in _discovered()]


@lru_cache(maxsize=None)
def _load(kind: str) -> Ecosystem | None:
    for name, entry in _discovered():
        if name == kind:
            loaded: Ecosystem = entry.load()
            return loaded
    return None


def find_ecosystem(kind: str) -> Ecosystem | None:
    return _load(kind)


def ecosystem(kind: str) -> Ecosystem:
    """The adapter registered for `kind`; ConfigError naming the installed ones if there is none."""
    found = _load(kind)
    if found is None:
        raise ConfigError(f"no adapter for channel kind {kind!r} is installed",
                          hint=f"installed: {', '.join(installed_kinds()) or 'none'}")
    return found
