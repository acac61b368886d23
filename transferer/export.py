"""Export: everything the site lacks since the previous bundle, as one new bundle folder.

The hub remembers what the site holds after importing its bundles, per
release (``SiteRelease``: its record's fingerprint and the release's
``updated_at`` when exported) and per blob (``SiteBlob``). The next export
looks only at releases updated since the previous export read the catalog
(through an index on ``releases.updated_at``) whose ``updated_at`` is not
the one exported, sends those that are new or whose record changed (a
vetting decision, say), the removals, and only blobs the site does not have
yet; then it rewrites only those rows. Its cost follows the change, not the
catalog. ``--full`` reads and sends everything and replaces the site state.
A bundle counts as exported only once it is completely written, fsynced and
renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session, selectinload

from reservoir.blobs import fsync_dir
from reservoir.context import AppContext
from reservoir.errors import ReservoirError
from reservoir.keys import load_signing_key
from reservoir.models import ArtifactState, Channel, Gate, Release, ReleaseState, utcnow
from reservoir.progress import Progress
from transferer.format import MANIFEST, SIGNATURE, TOC, BlobRef, Manifest, bundle_dir_name
from transferer.models import ExportedBundle, SiteBlob, SiteRelease
from transferer.payload import PartWriter, write_payload

log = logging.getLogger(__name__)
KEY_SEP = "\x1f"
DEFAULT_CHUNK = 4 << 30
# A writer stamps updated_at before it commits; a change committed after an export read the catalog
# but stamped before it is still found, as long as its transaction lasted less than this.
WATERMARK_MARGIN = timedelta(hours=6)


def release_key(channel: str, name: str, version: str) -> str:
    return KEY_SEP.join((channel, name, version))


def release_record(release: Release) -> dict[str, Any]:
    """A release as the bundle carries it (and as the site stores it)."""
    return {
        "channel": release.channel.name,
        "name": release.name,
        "display_name": release.display_name,
        "version": release.version,
        "gate": release.gate.value,
        "gate_reason": release.gate_reason,
        "declared_license": release.declared_license,
        "meta": release.meta or {},
        "artifacts": [
            {"filename": a.filename, "sha256": a.sha256, "size": a.size, "url": a.url, "meta": a.meta or {}}
            for a in sorted(release.artifacts, key=lambda a: a.filename)
        ],
    }


def record_blobs(record: dict[str, Any]) -> list[str]:
    digests = []
    for artifact in record["artifacts"]:
        digests.append(artifact["sha256"])
        digests.extend((artifact["meta"].get("aux_blobs") or {}).values())
    return digests


def fingerprint(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def exportable(release: Release) -> bool:
    """A site may receive it: selected, allowed by vetting, every file stored."""
    return (release.state == ReleaseState.ACTIVE and release.gate == Gate.ALLOWED and bool(release.artifacts)
            and all(a.state == ArtifactState.STORED for a in release.artifacts))


def _key_of(release: Release) -> str:
    return release_key(release.channel.name, release.name, release.version)


def _chunks(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    """Slices small enough for an IN (...) on every database."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _load(session: Session, ids: list[int]) -> list[Release]:
    out: list[Release] = []
    for chunk in _chunks(sorted(ids)):
        out.extend(session.scalars(
            select(Release).where(Release.id.in_(chunk))
            .options(selectinload(Release.artifacts), selectinload(Release.channel))))
    return out


@dataclass(frozen=True)
class Held:
    """A release as the site will hold it once this bundle is imported."""

    release_id: int
    fingerprint: str
    updated_at: datetime | None
    blobs: list[str]


@dataclass
class Delta:
    added: list[dict[str, Any]]
    removed: list[dict[str, str]]
    blobs: list[str]
    # What to write to the site tables once the bundle is recorded:
    held: dict[str, Held] = field(default_factory=dict)  # new or changed records
    seen: dict[str, tuple[int, datetime | None]] = field(default_factory=dict)  # unchanged; only updated_at moved
    dropped: set[str] = field(default_factory=set)
    full: bool = False  # the site's state is replaced, not amended
    examined: int = 0  # releases loaded and fingerprinted

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed


def _removal(key: str) -> dict[str, str]:
    channel, name, version = key.split(KEY_SEP)
    return {"channel": channel, "name": name, "version": version}


def full_delta(session: Session) -> Delta:
    """Every exportable release: what a full bundle carries."""
    ids = list(session.scalars(select(Release.id).where(Release.state == ReleaseState.ACTIVE,
                                                        Release.gate == Gate.ALLOWED)))
    delta = Delta([], [], [], full=True)
    for release in _load(session, ids):
        delta.examined += 1
        if exportable(release):
            record = release_record(release)
            delta.held[_key_of(release)] = Held(release.id, fingerprint(record), release.updated_at,
                                                record_blobs(record))
            delta.added.append(record)
    delta.added.sort(key=lambda r: release_key(r["channel"], r["name"], r["version"]))
    delta.blobs = sorted({b for held in delta.held.values() for b in held.blobs})
    return delta


def changed_release_ids(session: Session, since: datetime | None) -> list[int]:
    """Releases that may differ from what the site holds: updated since they were exported, or never exported.

    The index on releases.updated_at bounds the walk to `since` (the previous
    export's watermark less a margin); the join drops those whose updated_at
    is the one exported, so a large sync followed by a full export is not
    looked at again.
    """
    query = (
        select(Release.id)
        .outerjoin(SiteRelease, SiteRelease.release_id == Release.id)
        .where(
            or_(SiteRelease.key.is_(None), SiteRelease.updated_at.is_(None), SiteRelease.updated_at != Release.updated_at),
            or_(SiteRelease.key.is_not(None), and_(Release.state == ReleaseState.ACTIVE, Release.gate == Gate.ALLOWED)),
        )
    )
    if since is not None:
        query = query.where(Release.updated_at >= since)
    return list(session.scalars(query))


def _held_rows(session: Session, column: Any, values: list[Any]) -> list[SiteRelease]:
    return [row for chunk in _chunks(values) for row in session.scalars(select(SiteRelease).where(column.in_(chunk)))]


def _held_blobs(session: Session, digests: list[str]) -> set[str]:
    return {sha for chunk in _chunks(digests)
            for sha in session.scalars(select(SiteBlob.sha256).where(SiteBlob.sha256.in_(chunk)).distinct())}


def incremental_delta(session: Session, since: datetime | None) -> Delta:
    """What changed since the site state the hub recorded: cost in proportion to the change."""
    candidates = _load(session, changed_release_ids(session, since))
    keys = {release.id: _key_of(release) for release in candidates}
    by_key = {row.key: row for row in _held_rows(session, SiteRelease.key, sorted(set(keys.values())))}
    by_id = {row.release_id: row for row in _held_rows(session, SiteRelease.release_id, sorted(keys))}
    delta = Delta([], [], [], examined=len(candidates))
    gone: set[str] = set()
    for release in sorted(candidates, key=lambda r: keys[r.id]):
        key = keys[release.id]
        renamed = by_id.get(release.id)
        if renamed is not None and renamed.key != key:
            gone.add(renamed.key)  # its channel was renamed: the old key leaves the site
        held = by_key.get(key)
        if not exportable(release):
            if held is not None:
                gone.add(key)
            continue
        record = release_record(release)
        digest = fingerprint(record)
        if held is not None and held.fingerprint == digest:
            delta.seen[key] = (release.id, release.updated_at)
            continue
        delta.held[key] = Held(release.id, digest, release.updated_at, record_blobs(record))
        delta.added.append(record)
    deleted = select(SiteRelease.key).where(or_(
        SiteRelease.release_id.is_(None), ~select(Release.id).where(Release.id == SiteRelease.release_id).exists()))
    gone.update(session.scalars(deleted))
    gone -= set(delta.held) | set(delta.seen)
    delta.removed = [_removal(key) for key in sorted(gone)]
    delta.dropped = gone
    wanted = sorted({b for held in delta.held.values() for b in held.blobs})
    delta.blobs = sorted(set(wanted) - _held_blobs(session, wanted))
    return delta


def record_site_state(session: Session, delta: Delta) -> None:
    """Write what the site holds after this bundle: only the rows the delta touches (all for a full one)."""
    if delta.full:
        session.execute(delete(SiteBlob))
        session.execute(delete(SiteRelease))
    else:
        changed = sorted(delta.dropped | set(delta.held))
        for chunk in _chunks(changed):
            session.execute(delete(SiteBlob).where(SiteBlob.key.in_(chunk)))
            session.execute(delete(SiteRelease).where(SiteRelease.key.in_(chunk)))
        for key, (release_id, updated_at) in delta.seen.items():
            session.execute(update(SiteRelease).where(SiteRelease.key == key)
                            .values(release_id=release_id, updated_at=updated_at))
    if delta.held:
        session.execute(insert(SiteRelease), [
            {"key": key, "release_id": held.release_id, "fingerprint": held.fingerprint, "updated_at": held.updated_at}
            for key, held in delta.held.items()])
        blobs = [{"key": key, "sha256": sha} for key, held in delta.held.items() for sha in sorted(set(held.blobs))]
        if blobs:
            session.execute(insert(SiteBlob), blobs)


def _channel_records(session: Session) -> list[dict[str, Any]]:
    return [
        {"name": c.name, "kind": c.kind, "upstream": c.upstream, "options": c.options or {}}
        for c in session.scalars(select(Channel).order_by(Channel.name))
    ]


@dataclass(frozen=True)
class ExportResult:
    path: Path | None
    seq: int
    base: int
    releases: int
    removed: int
    blobs: int
    payload_bytes: int
    examined: int = 0  # releases the export loaded and fingerprinted


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def export_bundle(app: AppContext, out_dir: Path, *, full: bool = False, chunk_size: int = DEFAULT_CHUNK) -> ExportResult:
    """Write the next bundle into `out_dir`; returns what was written (path None: nothing new)."""
    home = app.home
    home.require_role("hub")
    signing = load_signing_key(home.keys_dir)
    with app.db.session() as session:
        watermark = utcnow()
        last = session.scalars(select(ExportedBundle).order_by(ExportedBundle.seq.desc()).limit(1)).first()
        if full or last is None:
            delta = full_delta(session)
        else:
            delta = incremental_delta(session, last.watermark - WATERMARK_MARGIN if last.watermark else None)
        channels = _channel_records(session)
    seq = (last.seq if last else 0) + 1
    base = 0 if delta.full else last.seq  # type: ignore[union-attr]
    if delta.empty:
        if delta.seen:  # nothing to send, but no need to look at these again
            with app.db.write_transaction() as session:
                record_site_state(session, delta)
        last_seq = last.seq if last else 0
        return ExportResult(None, last_seq, last.base if last else 0, 0, 0, 0, 0, delta.examined)

    missing = [b for b in delta.blobs if not app.blobs.has(b)]
    if missing:
        raise ReservoirError(
            f"blob {missing[0]} of an exportable release is missing from the hub store ({len(missing)} missing)",
            hint="run `reservoir blobs verify` and `reservoir sync` to fetch it again",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    name = bundle_dir_name(home.instance_id, seq)
    final = out_dir / name
    if final.exists():
        # A bundle folder the hub never recorded: an export died after renaming it.
        abandoned = out_dir / f".abandoned-{name}-{os.getpid()}"
        log.warning("%s was never recorded as exported; moving it aside to %s", final, abandoned)
        os.rename(final, abandoned)
    staging = out_dir / f".partial-{name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        sizes = [app.blobs.size(b) for b in delta.blobs]
        writer = PartWriter(staging, chunk_size)
        try:
            with Progress(f"exporting bundle {seq}", total=sum(sizes), unit="B", unit_scale=True) as progress:
                write_payload(app.blobs, delta.blobs, writer, progress.update)
            toc = writer.close()
        except BaseException:
            writer.abort()  # its writer threads; the partial folder goes below
            raise
        toc_bytes = toc.to_json()
        manifest = Manifest(
            hub_id=home.instance_id,
            key_fingerprint=signing.fingerprint,
            seq=seq,
            base=base,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            channels=tuple(channels),
            releases=tuple(delta.added),
            removed=tuple(delta.removed),
            blobs=tuple(BlobRef(b, s) for b, s in zip(delta.blobs, sizes)),
            toc_sha256=hashlib.sha256(toc_bytes).hexdigest(),
            toc_size=len(toc_bytes),
        )
        manifest_bytes = manifest.to_json()
        _write_durably(staging / TOC, toc_bytes)
        _write_durably(staging / MANIFEST, manifest_bytes)
        _write_durably(staging / SIGNATURE, signing.sign(manifest_bytes))
        fsync_dir(staging)
        os.rename(staging, final)
        fsync_dir(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    with app.db.write_transaction() as session:
        taken = session.scalar(select(func.max(ExportedBundle.seq)))
        if taken is not None and taken >= seq:
            shutil.rmtree(final, ignore_errors=True)
            raise ReservoirError(f"another export took bundle {seq} meanwhile", hint="run export again")
        session.add(
            ExportedBundle(
                seq=seq,
                base=base,
                full=base == 0,
                path=str(final),
                manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
                payload_bytes=toc.payload_size,
                site_state={},
                watermark=watermark,
            )
        )
        record_site_state(session, delta)
    return ExportResult(final, seq, base, len(delta.added), len(delta.removed), len(delta.blobs), toc.payload_size,
                        delta.examined)
