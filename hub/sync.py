"""One sync of a channel: select from upstream, diff, fetch the new, record.

The order makes a kill at any moment harmless: selecting and fetching only
add content-addressed blobs (never visible half-written), and the catalog
(releases, artifacts, snapshot, caches) changes in one transaction at the
end. A sync killed midway therefore leaves the catalog as it was, and the
next one finds the files it had already stored in the blob store and does
not download them again.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from downloader.base import (
    AdapterState,
    ChannelSpec,
    Ecosystem,
    FetchPolicy,
    SelectedRelease,
    Selection,
    StoreOutcome,
    UpstreamFile,
    cursor_probe,
    ecosystem,
)
from hub.cache import load_state, save_state
from hub.channels import get_channel
from reservoir.blobs import BlobStore
from reservoir.context import AppContext
from reservoir.errors import ReservoirError
from reservoir.models import (
    Artifact,
    ArtifactState,
    Channel,
    Release,
    ReleaseState,
    Snapshot,
    SyncRun,
    utcnow,
)
from reservoir.plugins import vetters
from reservoir.progress import Progress


@dataclass(frozen=True)
class AddedRelease:
    name: str
    version: str
    files: int
    size: int


@dataclass(frozen=True)
class FailedRelease:
    name: str
    version: str
    reason: str
    key: str = ""


@dataclass
class ChannelReport:
    channel: str
    added: list[AddedRelease] = field(default_factory=list)
    removed: list[tuple[str, str]] = field(default_factory=list)
    failed: list[FailedRelease] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    selected: int = 0
    downloaded_files: int = 0
    downloaded_bytes: int = 0
    seconds: float = 0.0
    added_release_ids: list[int] = field(default_factory=list)
    started_at: datetime = field(default_factory=utcnow)

    @property
    def ok(self) -> bool:
        return not self.failed


# The adapter's last cursor, kept per channel beside its caches (docs/catalog.md).
CURSOR_KEY = "cursor"
# The last sync that selected and stored everything: its cursor, the options it ran with, what it reported.
LAST_COMPLETE_KEY = "last_complete"


@dataclass
class Caches:
    """What earlier syncs of a channel learned: the ecosystem's own caches and the generic state."""

    ecosystem: Any
    state: AdapterState


# ---------------------------------------------------------------- loading


def load_channel(session: Session, name: str) -> ChannelSpec:
    channel = get_channel(session, name)
    return ChannelSpec(channel.id, channel.name, channel.kind, channel.upstream, dict(channel.options or {}))


def load_caches(session: Session, eco: Ecosystem, channel: ChannelSpec, state: AdapterState | None = None) -> Caches:
    state = load_state(session, channel.id) if state is None else state
    return Caches(eco.load_caches(session, channel, state), state)


def options_digest(channel: ChannelSpec) -> str:
    """What a channel's selection depends on besides its upstream's state."""
    return hashlib.sha256(json.dumps({"upstream": channel.upstream, "options": dict(channel.options)},
                                     sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------- the no-change shortcut


def upstream_unchanged(eco: Ecosystem, channel: ChannelSpec, state: AdapterState, policy: FetchPolicy,
                       scratch: Path) -> bool:
    """Whether the last complete sync's selection still holds, asked with the ecosystem's cheapest requests.

    Only a sync that failed nothing counts (failures are retried by a full
    sync), with the channel's options as they are now.
    """
    last = state.get(LAST_COMPLETE_KEY)
    probe = cursor_probe(eco)
    if probe is None or not isinstance(last, dict) or last.get("options") != options_digest(channel):
        return False
    try:
        now = asyncio.run(probe.upstream_cursor(channel, state, policy, scratch))
    except ReservoirError:
        return False  # the full sync asks again and reports what is wrong
    return now is not None and now == last.get("cursor")


def record_no_change(session: Session, channel: ChannelSpec, state: AdapterState, report: ChannelReport) -> None:
    """A sync that found the upstream as the last complete one left it: a run with nothing added or removed."""
    last = state.get(LAST_COMPLETE_KEY) or {}
    report.selected = int(last.get("selected", 0))
    report.warnings = list(last.get("warnings", []))
    save_state(session, channel.id, state)  # validators the probe refreshed
    session.add(SyncRun(channel_id=channel.id, finished_at=utcnow(), status="ok", added=0, removed=0, failed=0,
                        downloaded_bytes=0, message="", started_at=report.started_at))


def held_releases(session: Session, channel_id: int) -> dict[str, Release]:
    query = (
        select(Release)
        .where(Release.channel_id == channel_id)
        .options(selectinload(Release.artifacts))
    )
    return {f"{r.name}=={r.version}": r for r in session.scalars(query)}


# ---------------------------------------------------------------- planning


@dataclass(frozen=True)
class HeldFile:
    """What the diff needs of a stored artifact (read as plain columns: no ORM objects for a whole channel)."""

    sha256: str
    state: ArtifactState
    meta: dict[str, Any]


def held_files(session: Session, channel_id: int) -> dict[str, dict[str, HeldFile]]:
    """{"name==version": {filename: HeldFile}} of the channel's releases."""
    rows = session.execute(
        select(Release.name, Release.version, Artifact.filename, Artifact.sha256, Artifact.state, Artifact.meta)
        .join(Artifact, Artifact.release_id == Release.id)
        .where(Release.channel_id == channel_id)
    )
    out: dict[str, dict[str, HeldFile]] = {}
    for name, version, filename, sha256, state, meta in rows:
        out.setdefault(f"{name}=={version}", {})[filename] = HeldFile(sha256, state, meta or {})
    return out


def artifact_complete(artifact: Artifact | HeldFile, blobs: BlobStore, aux_roles: tuple[str, ...] = ()) -> bool:
    """Stored, its blob present, and every derived blob the upstream file needs (a wheel's METADATA) recorded."""
    if artifact.state != ArtifactState.STORED or not blobs.has(artifact.sha256):
        return False
    recorded = (artifact.meta or {}).get("aux_blobs") or {}
    return all(recorded.get(role) for role in aux_roles)


def files_to_fetch(selection: Selection, held: dict[str, dict[str, HeldFile]], blobs: BlobStore) -> list[UpstreamFile]:
    """Files of the selection that the catalog does not hold complete (the diff)."""
    todo: dict[str, UpstreamFile] = {}
    for key, release in selection.releases.items():
        if release.failure:
            continue
        have = held.get(key, {})
        for file in release.files:
            artifact = have.get(file.filename)
            if artifact is None or artifact.sha256 != file.sha256 or not artifact_complete(artifact, blobs,
                                                                                            file.aux_roles):
                todo.setdefault(file.sha256, file)
    return list(todo.values())


# ---------------------------------------------------------------- recording


def _artifact_meta(file: UpstreamFile, aux: dict[str, str]) -> dict[str, Any]:
    meta = dict(file.meta)
    if aux:
        meta["aux_blobs"] = dict(aux)
    return meta


def _stored_size(file: UpstreamFile, blobs: BlobStore) -> int:
    if file.size is not None:
        return file.size
    return blobs.size(file.sha256) if blobs.has(file.sha256) else 0


def _exported_signature(release: Release) -> str:
    """What a bundle carries of a release, to tell whether a sync changed it."""
    return json.dumps([release.display_name, release.state.value if release.state else None, release.meta,
                       release.declared_license,
                       sorted([a.filename, a.sha256, a.size, a.url, a.state.value if a.state else None, a.meta]
                              for a in release.artifacts)], sort_keys=True, default=str)


def _record_release(session: Session, channel_id: int, selected: SelectedRelease, before: Release | None,
                    outcomes: dict[str, StoreOutcome], report: ChannelReport, blobs: BlobStore) -> Release:
    was_complete = (
        before is not None
        and before.state == ReleaseState.ACTIVE
        and all(a.state == ArtifactState.STORED for a in before.artifacts)
        and {a.filename for a in before.artifacts} == {f.filename for f in selected.files}
    )
    signature_before = _exported_signature(before) if before is not None else ""
    release = before or Release(channel_id=channel_id, name=selected.name, version=selected.version)
    release.display_name = selected.display_name
    release.state = ReleaseState.ACTIVE
    if selected.meta:
        vetting = release.meta.get("vetting") if release.meta else None
        release.meta = {**selected.meta, **({"vetting": vetting} if vetting else {})}
        release.declared_license = selected.declared_license
    if before is None:
        session.add(release)
    have = {a.filename: a for a in release.artifacts}
    errors: list[str] = []
    for file in selected.files:
        artifact = have.pop(file.filename, None)
        if artifact is None:
            artifact = Artifact(filename=file.filename)
            release.artifacts.append(artifact)
        outcome = outcomes.get(file.sha256)
        aux = (outcome.aux_blobs if outcome else None) or selected.aux_blobs.get(file.filename) or (
            artifact.meta.get("aux_blobs", {}) if artifact.meta and artifact.sha256 == file.sha256 else {})
        artifact.url = file.url
        artifact.size = file.size if file.size is not None else (blobs.size(file.sha256) if blobs.has(file.sha256) else None)
        if artifact.sha256 != file.sha256:
            artifact.sha256, artifact.state = file.sha256, ArtifactState.PENDING
        artifact.meta = _artifact_meta(file, aux)
        if selected.failure:
            if artifact.state != ArtifactState.STORED:
                artifact.state, artifact.error = ArtifactState.FAILED, selected.failure
        elif outcome is not None:
            artifact.state = ArtifactState.FAILED if outcome.error else ArtifactState.STORED
            artifact.error = outcome.error
        if artifact.state == ArtifactState.FAILED:
            errors.append(artifact.error)
    for gone in have.values():  # files the upstream no longer lists for this release
        release.artifacts.remove(gone)
    if before is not None and _exported_signature(release) != signature_before:
        # A change to the files alone leaves the release row untouched, and exports find changes by updated_at.
        release.updated_at = utcnow()
    if selected.failure or errors:
        reason = "; ".join(dict.fromkeys([selected.failure] if selected.failure else errors))
        report.failed.append(FailedRelease(selected.display_name, selected.version, reason, selected.key))
    elif not was_complete:
        report.added.append(AddedRelease(selected.display_name, selected.version, len(selected.files),
                                         sum(_stored_size(f, blobs) for f in selected.files)))
    return release


def _save_caches(session: Session, eco: Ecosystem, channel: ChannelSpec, caches: Caches,
                 selection: Selection, report: ChannelReport) -> None:
    eco.save_caches(session, channel, caches.ecosystem, caches.state)
    if selection.cursor is not None:
        caches.state.put(CURSOR_KEY, selection.cursor)
    complete = selection.cursor is not None and not report.failed
    caches.state.put(LAST_COMPLETE_KEY, {
        "cursor": selection.cursor, "options": options_digest(channel), "selected": len(selection.releases),
        "warnings": list(selection.warnings)} if complete else None)
    save_state(session, channel.id, caches.state)


def record_sync(session: Session, eco: Ecosystem, config: ChannelSpec, selection: Selection,
                outcomes: dict[str, StoreOutcome], caches: Caches, report: ChannelReport, started: float,
                blobs: BlobStore) -> None:
    """Write the whole outcome of a sync in the caller's one transaction."""
    held = held_releases(session, config.id)
    new_releases: list[Release] = []
    for key, selected in selection.releases.items():
        added_before = len(report.added)
        release = _record_release(session, config.id, selected, held.get(key), outcomes, report, blobs)
        if len(report.added) > added_before:
            new_releases.append(release)
    # A project whose new release failed keeps its old ones, so the mirror
    # still installs it.
    failed_projects = {selection.releases[f"{f.key}"].name for f in report.failed if f.key in selection.releases}
    for key, release in held.items():
        if release.name in failed_projects:
            continue
        if key not in selection.releases and release.state == ReleaseState.ACTIVE:
            release.state = ReleaseState.REMOVED
            report.removed.append((release.display_name, release.version))
    _save_caches(session, eco, config, caches, selection, report)
    session.add(Snapshot(channel_id=config.id, selection=selection.snapshot()))
    session.add(
        SyncRun(
            channel_id=config.id,
            finished_at=utcnow(),
            status="failed" if report.failed else "ok",
            added=len(report.added),
            removed=len(report.removed),
            failed=len(report.failed),
            downloaded_bytes=report.downloaded_bytes,
            message="; ".join(f"{f.name} {f.version}: {f.reason}" for f in report.failed)[:4000],
            started_at=report.started_at,
        )
    )
    session.flush()
    report.added_release_ids = [r.id for r in new_releases]
    report.seconds = time.monotonic() - started


# ---------------------------------------------------------------- running


async def _select_and_fetch(eco: Ecosystem, config: ChannelSpec, blobs: BlobStore, caches: Caches,
                            policy: FetchPolicy, scratch: Path, held: Callable[[], dict[str, dict[str, HeldFile]]],
                            report: ChannelReport) -> tuple[Selection, dict[str, StoreOutcome]]:
    async with eco.open(config, blobs, caches.ecosystem, policy, scratch) as adapter:
        with Progress(f"{config.name}: reading upstream", unit=eco.progress_unit) as pages:
            selection = await adapter.select(pages.update)
        todo = files_to_fetch(selection, held(), blobs)
        total = sum(f.size or 0 for f in todo)
        with Progress(f"{config.name}: fetching {len(todo)} files", total=total or None, unit="B",
                      unit_scale=True) as progress:
            outcomes = await adapter.store(todo, progress.update)
        report.downloaded_files = adapter.downloaded_files
        report.downloaded_bytes = adapter.downloaded_bytes
    return selection, {o.sha256: o for o in outcomes}


@contextmanager
def channel_lock(app: AppContext, name: str) -> Iterator[None]:
    """One sync of a channel at a time on this host; a second one is refused, not queued."""
    app.home.tmp_dir.mkdir(parents=True, exist_ok=True)
    with open(app.home.tmp_dir / f"sync-{name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ReservoirError(f"channel {name!r} is being synced by another process",
                                 hint="wait for it to finish") from None
        yield


def sync_channel(app: AppContext, name: str, policy: FetchPolicy | None = None) -> ChannelReport:
    """Sync one channel; raises ReservoirError (with nothing changed) when upstream cannot be read."""
    with channel_lock(app, name):
        return _sync_channel(app, name, policy)


def _sync_channel(app: AppContext, name: str, policy: FetchPolicy | None) -> ChannelReport:
    started = time.monotonic()
    app.blobs.clean_stale_temporaries()  # what writers killed long ago left behind
    policy = policy or FetchPolicy()
    with app.db.transaction() as session:
        config = load_channel(session, name)
        eco = ecosystem(config.kind)
        state = load_state(session, config.id)
    report = ChannelReport(config.name)
    app.home.tmp_dir.mkdir(parents=True, exist_ok=True)
    # Before any cache is loaded: an unchanged upstream then costs its conditional requests and no more.
    if upstream_unchanged(eco, config, state, policy, app.home.tmp_dir):
        with app.db.write_transaction() as session:
            record_no_change(session, config, state, report)
        run_vetters(app, config, report)
        report.seconds = time.monotonic() - started
        return report
    with app.db.transaction() as session:
        caches = load_caches(session, eco, config, state)

    def held() -> dict[str, dict[str, HeldFile]]:
        with app.db.transaction() as session:
            return held_files(session, config.id)

    selection, outcomes = asyncio.run(
        _select_and_fetch(eco, config, app.blobs, caches, policy, app.home.tmp_dir, held, report)
    )
    report.warnings = selection.warnings
    report.selected = len(selection.releases)
    with app.db.write_transaction() as session:
        record_sync(session, eco, config, selection, outcomes, caches, report, started, app.blobs)
    run_vetters(app, config, report)
    report.seconds = time.monotonic() - started  # vetting included
    return report


def unvetted_release_ids(session: Session, channel_id: int) -> list[int]:
    """Active releases no vetter has recorded a verdict for (a crashed vetting, say)."""
    rows = session.execute(
        select(Release.id, Release.meta).where(Release.channel_id == channel_id, Release.state == ReleaseState.ACTIVE)
    )
    return [release_id for release_id, meta in rows if not (meta or {}).get("vetting")]


def run_vetters(app: AppContext, config: ChannelSpec, report: ChannelReport) -> None:
    """Vet what this sync added, and whatever an earlier sync failed to get vetted.

    A vetter that fails leaves its releases without a verdict, so the next
    sync offers them again instead of letting them slip through unvetted.
    """
    try:
        found = vetters()
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not pass as "vetted"
        raise ReservoirError(f"channel {config.name!r}: cannot load the vetters: {exc}",
                             hint="the releases stay unvetted; fix the plugin and sync again") from exc
    if not found:
        return
    with app.db.transaction() as session:
        ids = sorted(set(report.added_release_ids) | set(unvetted_release_ids(session, config.id)))
    if not ids:
        return
    for vet in found:
        try:
            vet(app, ids)
        except ReservoirError:
            raise
        except Exception as exc:  # noqa: BLE001 - see above
            raise ReservoirError(
                f"channel {config.name!r}: vetter {getattr(vet, '__module__', vet)} failed on {len(ids)} releases: {exc}",
                hint="they stay unvetted and are vetted again by the next sync",
            ) from exc


def channel_names(app: AppContext, names: list[str]) -> list[str]:
    with app.db.transaction() as session:
        if names:
            return [get_channel(session, n).name for n in names]
        found = list(session.scalars(select(Channel.name).order_by(Channel.name)))
    if not found:
        raise ReservoirError("no channels to sync", hint="add one with `reservoir channel add`")
    return found
