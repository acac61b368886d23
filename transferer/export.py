"""Export: everything the site lacks since the previous bundle, as one new bundle folder.

The hub remembers, per bundle, what the site holds after importing it
(``ExportedBundle.site_state``); the next export sends releases that are new
or whose record changed (a vetting decision, say), the removals, and only
blobs the site does not have yet. A bundle counts as exported only once it
is completely written, fsynced and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from reservoir.blobs import fsync_dir
from reservoir.context import AppContext
from reservoir.errors import ReservoirError
from reservoir.keys import load_signing_key
from reservoir.models import ArtifactState, Channel, Gate, Release, ReleaseState
from reservoir.progress import Progress
from transferer.format import MANIFEST, SIGNATURE, TOC, BlobRef, Manifest, bundle_dir_name
from transferer.models import ExportedBundle
from transferer.payload import PartWriter, write_payload

log = logging.getLogger(__name__)
KEY_SEP = "\x1f"
DEFAULT_CHUNK = 4 << 30


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


def exportable_records(session: Session) -> dict[str, dict[str, Any]]:
    """Releases a site may receive: selected, allowed by vetting, every file stored."""
    releases = session.scalars(
        select(Release)
        .where(Release.state == ReleaseState.ACTIVE, Release.gate == Gate.ALLOWED)
        .options(selectinload(Release.artifacts), selectinload(Release.channel))
    ).all()
    records = {}
    for release in releases:
        if not release.artifacts or any(a.state != ArtifactState.STORED for a in release.artifacts):
            continue
        records[release_key(release.channel.name, release.name, release.version)] = release_record(release)
    return records


@dataclass(frozen=True)
class Delta:
    added: list[dict[str, Any]]
    removed: list[dict[str, str]]
    blobs: list[str]
    state: dict[str, dict[str, Any]]

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed


def compute_delta(current: dict[str, dict[str, Any]], previous: dict[str, dict[str, Any]] | None) -> Delta:
    state = {key: {"fp": fingerprint(rec), "blobs": record_blobs(rec)} for key, rec in current.items()}
    if previous is None:
        added = [current[k] for k in sorted(current)]
        blobs = sorted({b for rec in added for b in record_blobs(rec)})
        return Delta(added, [], blobs, state)
    added = [current[k] for k in sorted(current) if previous.get(k, {}).get("fp") != state[k]["fp"]]
    removed = []
    for key in sorted(set(previous) - set(current)):
        channel, name, version = key.split(KEY_SEP)
        removed.append({"channel": channel, "name": name, "version": version})
    held = {b for entry in previous.values() for b in entry.get("blobs", [])}
    blobs = sorted({b for rec in added for b in record_blobs(rec)} - held)
    return Delta(added, removed, blobs, state)


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
        last = session.scalars(select(ExportedBundle).order_by(ExportedBundle.seq.desc()).limit(1)).first()
        current = exportable_records(session)
        channels = _channel_records(session)
    previous = None if (full or last is None) else last.site_state
    delta = compute_delta(current, previous)
    seq = (last.seq if last else 0) + 1
    base = 0 if previous is None else last.seq  # type: ignore[union-attr]
    if delta.empty:
        last_seq = last.seq if last else 0
        return ExportResult(None, last_seq, last.base if last else 0, 0, 0, 0, 0)

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
                site_state=delta.state,
            )
        )
    return ExportResult(final, seq, base, len(delta.added), len(delta.removed), len(delta.blobs), toc.payload_size)
