"""Import one bundle: verify everything, then change the site in one transaction.

Order matters: signature and sequence are checked before a byte of payload
is read; parts and blobs are verified while streaming into the
content-addressed store (a blob is visible only once its hash matched, and
storing verified blobs changes nothing a client sees); only then does one
database transaction apply the catalog change, after which the trees are
republished atomically. A kill at any point leaves the previous state
served, and rerunning the import completes it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from reservoir.blobs import BlobBatch, BlobStore, DiskFull
from reservoir.context import AppContext
from reservoir.errors import ReservoirError
from reservoir.keys import short, trusted_keys, verify_signature
from reservoir.models import Artifact, ArtifactState, Channel, Gate, Release, ReleaseState, utcnow
from reservoir.progress import Progress
from restorer.models import ALL_LEAVES, DirtyPage, HubKey, ImportedBundle, SiteGeneration
from restorer.publish import PublishResult, ReleaseRef, live_generation, publish_changes, publishers, tree_root
from transferer.format import MANIFEST, MAX_MANIFEST_BYTES, SIGNATURE, TOC, BundleError, Manifest, Toc, parse_manifest, parse_toc
from transferer.payload import BLOCK, PartReader, read_members

log = logging.getLogger(__name__)
# Room left on the site's filesystem beyond the payload itself (database, pages).
SPACE_MARGIN = 16 << 20
# A part modified this recently may still be being copied; one short and older than this is truncated.
SETTLE_S = 5.0
# Blobs at least this large are written around the page cache (reservoir.directio): they are
# made durable at once and read again only when a client asks. BENCHMARKS.md has the trade.
DIRECT_MIN_BYTES = 256 << 10


class BundleIncomplete(ReservoirError):
    """Parts are missing or still being copied: wait for them."""


class SequenceGap(ReservoirError):
    """Earlier bundles have not been imported yet: wait for them."""


class BundleReplay(ReservoirError):
    """A bundle the site has already moved past."""


@dataclass(frozen=True)
class ImportOutcome:
    status: Literal["imported", "already"]
    manifest: Manifest
    new_blobs: int = 0

    def describe(self) -> str:
        m = self.manifest
        if self.status == "already":
            return f"{m.label} was already imported; nothing to do"
        kind = "full" if m.full else f"on {m.base}"
        return (
            f"imported {m.label} ({kind}): {len(m.releases)} releases, {len(m.removed)} removed, "
            f"{self.new_blobs} new files"
        )


@dataclass(frozen=True)
class SignedManifest:
    manifest: Manifest
    raw: bytes
    # The trusted key that actually signed `raw`: what the site binds and records, never the manifest's claim.
    signer: str


class NotABundle(ReservoirError):
    """A folder without a manifest: the watcher waits for one, `reservoir import` refuses it."""


def read_capped(path: Path, cap: int) -> bytes:
    """The whole file, refused unread when it is over `cap` bytes: a hostile bundle cannot make the site load a huge file."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > cap:
            raise BundleError(f"{path.name} is {size >> 20} MiB, over the {cap >> 20} MiB a manifest may be: not a Reservoir manifest")
        # One byte more than the size shows a file still growing, without reading the rest.
        data = f.read(size + 1)
    if len(data) > size:
        raise BundleIncomplete(f"{path.name} is still being copied")
    return data


def read_signed_manifest(folder: Path, app: AppContext) -> SignedManifest:
    """The manifest, once its signature checks out against a trusted hub key, and that key's fingerprint."""
    try:
        raw = read_capped(folder / MANIFEST, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise NotABundle(
            f"{folder} is not a bundle folder: it has no {MANIFEST}",
            hint="pass a folder that `reservoir export` wrote, named reservoir-HUBID-SEQ",
        ) from None
    try:
        signature = (folder / SIGNATURE).read_bytes()
    except FileNotFoundError:
        raise BundleIncomplete(f"no {SIGNATURE} yet") from None
    keys = trusted_keys(app.home.keys_dir)
    if not keys:
        raise ReservoirError("this site trusts no hub key yet", hint="run `reservoir trust add HUB_KEY_FILE`")
    # Verified before a byte of JSON is parsed.
    signer = verify_signature(keys, raw, signature, MANIFEST)
    manifest = parse_manifest(raw)
    if manifest.key_fingerprint != signer:
        raise BundleError(
            f"{manifest.label} claims key {short(manifest.key_fingerprint)} but trusted key {short(signer)} signed it: refused",
            hint="a hub signs with its own key only; ask the hub's operator where this bundle came from",
        )
    return SignedManifest(manifest, raw, signer)


def read_toc(folder: Path, manifest: Manifest) -> Toc:
    try:
        raw = read_capped(folder / TOC, manifest.toc_size)
    except FileNotFoundError:
        raise BundleIncomplete(f"no {TOC} yet") from None
    except BundleError:
        raise BundleError(f"{TOC} does not match the signed manifest") from None
    if len(raw) != manifest.toc_size or hashlib.sha256(raw).hexdigest() != manifest.toc_sha256:
        raise BundleError(f"{TOC} does not match the signed manifest")
    return parse_toc(raw)


def check_parts_present(folder: Path, toc: Toc, settle_s: float = SETTLE_S) -> None:
    """Every part at its final size; a short part left alone for `settle_s` is truncated, not still arriving."""
    present = 0
    settled_before = time.time() - settle_s
    for part in toc.parts:
        try:
            stat = (folder / part.name).stat()
        except FileNotFoundError:
            continue
        if stat.st_size == part.size:
            present += 1
        elif stat.st_size > part.size:
            raise BundleError(f"part {part.name} is larger than the table of contents says ({stat.st_size} of {part.size} bytes)")
        elif stat.st_mtime <= settled_before:
            raise BundleError(
                f"part {part.name} is truncated ({stat.st_size} of {part.size} bytes)",
                hint="copy the bundle from the hub's media again",
            )
        else:
            raise BundleIncomplete(f"part {part.name} is still being copied ({stat.st_size} of {part.size} bytes)")
    if present < len(toc.parts):
        raise BundleIncomplete(f"{present} of {len(toc.parts)} parts present")


def check_hub_key(session: Session, manifest: Manifest, signer: str) -> bool:
    """True when the hub is already bound to `signer`; raises when the hub or the key is bound elsewhere."""
    bound = session.get(HubKey, manifest.hub_id)
    if bound is not None and bound.key_fingerprint != signer:
        raise BundleError(
            f"{manifest.label} was signed by key {short(signer)}, but hub {manifest.hub_id[:8]} signs with key "
            f"{short(bound.key_fingerprint)}: refused as an impersonation",
            hint=f"if that hub really has a new key, run `reservoir trust rm {short(bound.key_fingerprint)}` and import again",
        )
    other = session.scalars(select(HubKey).where(HubKey.key_fingerprint == signer)).first()
    if other is not None and other.hub_id != manifest.hub_id:
        raise BundleError(
            f"{manifest.label} was signed by key {short(signer)}, which signs for hub {other.hub_id[:8]}: "
            "a key speaks for one hub only, refused",
            hint=f"if that key really moved to hub {manifest.hub_id[:8]}, run `reservoir trust rm {short(signer)}`, "
            "`reservoir trust add` it again and import again",
        )
    return bound is not None


def check_sequence(session: Session, manifest: Manifest, manifest_sha: str) -> bool:
    """True when exactly this bundle was imported already; raises when it may not be imported now."""
    done = session.scalars(
        select(ImportedBundle).where(ImportedBundle.hub_id == manifest.hub_id, ImportedBundle.seq == manifest.seq)
    ).first()
    if done is not None:
        if done.manifest_sha256 == manifest_sha:
            return True
        raise BundleReplay(f"{manifest.label} conflicts with the bundle {manifest.seq} this site imported before")
    current = session.scalar(select(func.max(ImportedBundle.seq)).where(ImportedBundle.hub_id == manifest.hub_id)) or 0
    if manifest.seq <= current:
        raise BundleReplay(f"{manifest.label} is older than the site's sequence {current}: a replay, refused")
    if not manifest.full and manifest.base != current:
        missing = f"{current + 1}" if manifest.base == current + 1 else f"{current + 1}..{manifest.base}"
        raise SequenceGap(
            f"{manifest.label} builds on bundle {manifest.base} but the site is at {current}: missing bundles {missing}",
            hint="import those first, or export a --full bundle on the hub",
        )
    return False


def check_free_space(store: BlobStore, payload_size: int) -> None:
    stats = os.statvfs(store.root)
    free = stats.f_bavail * stats.f_frsize
    if free < payload_size + SPACE_MARGIN:
        raise DiskFull(
            f"not enough space in {store.root}: the bundle needs {payload_size >> 20} MiB, {free >> 20} MiB free",
            hint="free space on the site and import again",
        )


def artifact_blobs(manifest: Manifest) -> set[str]:
    """Every blob the bundle's releases name: their files and the files' auxiliary blobs (metadata)."""
    digests: set[str] = set()
    for release in manifest.releases:
        for artifact in release["artifacts"]:
            digests.add(artifact["sha256"])
            digests.update(((artifact.get("meta") or {}).get("aux_blobs") or {}).values())
    return digests


def check_artifact_blobs(manifest: Manifest, store: BlobStore) -> None:
    """Refuse a bundle naming a file that neither its payload nor the site's store holds.

    Such a catalog would commit and then break every publish after it, so it
    is refused before a byte of payload is read.
    """
    carried = {b.sha256 for b in manifest.blobs}
    missing = sorted(sha for sha in artifact_blobs(manifest) - carried if not store.has(sha))
    if missing:
        raise BundleError(
            f"{len(missing)} files the releases name are neither in the bundle nor on this site (first: {missing[0]})",
            hint="export a --full bundle on the hub",
        )


def extract_blobs(folder: Path, toc: Toc, manifest: Manifest, store: BlobStore) -> int:
    """Stream the payload into the store, verifying parts and blobs; returns how many were new."""
    expected = {b.sha256: b.size for b in manifest.blobs}
    seen: set[str] = set()
    with (
        Progress(f"importing {manifest.label}", total=toc.payload_size, unit="B", unit_scale=True) as progress,
        store.batch() as batch,
    ):
        reader = PartReader(folder, toc, progress.update)
        new = _store_members(reader, expected, seen, store, batch)
        missing = [sha for sha in expected if sha not in seen and not store.has(sha)]
        if missing:
            raise BundleError(f"payload lacks {len(missing)} blobs the manifest lists (first: {missing[0]})")
        # Only a payload verified to its end lets its blobs in.
        batch.commit()
    return new


def _store_members(reader: PartReader, expected: dict[str, int], seen: set[str], store: BlobStore, batch: BlobBatch) -> int:
    """Every member of the payload into `batch`, each checked against the manifest; returns how many were new."""
    new = 0
    try:
        for sha256, size in read_members(reader):
            if sha256 not in expected or sha256 in seen:
                raise BundleError(f"payload carries blob {sha256} that the manifest does not list (or twice)")
            if size != expected[sha256]:
                raise BundleError(f"blob {sha256} has size {size}, the manifest says {expected[sha256]}")
            seen.add(sha256)
            if store.has(sha256):
                _skip(reader, size)
            else:
                with batch.writer(sha256, size, direct=size >= DIRECT_MIN_BYTES) as writer:
                    remaining = size
                    while remaining:
                        chunk = reader.read_some(remaining)
                        if not chunk:
                            raise BundleError(f"payload ends inside blob {sha256}")
                        writer.write(chunk)
                        remaining -= len(chunk)
                    writer.commit()
                new += 1
            pad = (-size) % BLOCK
            if pad and len(reader.read(pad)) != pad:
                raise BundleError("payload ends inside tar padding")
        reader.finish()
    finally:
        reader.close()
    return new


def _skip(reader: PartReader, size: int) -> None:
    remaining = size
    while remaining:
        chunk = reader.read_some(remaining)
        if not chunk:
            raise BundleError("payload ends inside a blob")
        remaining -= len(chunk)


def _generation(session: Session) -> SiteGeneration:
    generation = session.get(SiteGeneration, 1)
    if generation is None:
        generation = SiteGeneration(id=1, catalog=0, published=0)
        session.add(generation)
        session.flush()
    return generation


SOURCE_HUB = "source_hub"


def _upsert_channel(session: Session, raw: dict[str, Any], hub_id: str) -> Channel:
    channel = session.scalars(select(Channel).where(Channel.name == raw["name"])).first()
    if channel is None:
        channel = Channel(name=raw["name"], kind=raw["kind"], upstream=str(raw.get("upstream", "")), options={})
        session.add(channel)
    channel.kind = raw["kind"]
    channel.upstream = str(raw.get("upstream", ""))
    # Remember which hub feeds the channel, so a full bundle replaces exactly that hub's catalog.
    channel.options = {**dict(raw.get("options") or {}), SOURCE_HUB: hub_id}
    session.flush()
    return channel


def _gate(value: Any) -> Gate:
    try:
        return Gate(value)
    except ValueError:
        raise BundleError(f"unknown gate {str(value)[:40]!r} in the manifest") from None


def _delete_releases(session: Session, ids: list[int]) -> None:
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        session.execute(delete(Artifact).where(Artifact.release_id.in_(chunk)), execution_options={"synchronize_session": False})
        session.execute(delete(Release).where(Release.id.in_(chunk)), execution_options={"synchronize_session": False})


@dataclass(frozen=True)
class CatalogChange:
    """What one bundle changed in the catalog: every release, or (a full bundle) the whole of it."""

    full: bool
    releases: list[ReleaseRef]


QUERY_CHUNK = 500


def _existing(session: Session, wanted: dict[int, set[tuple[str, str]]]) -> dict[tuple[int, str, str], tuple[int, dict[str, Any]]]:
    """The releases the manifest names that the site holds: (channel id, name, version) -> (id, meta).

    Indexed lookups in chunks of names, per channel: the cost is the bundle's, not the catalog's.
    """
    found: dict[tuple[int, str, str], tuple[int, dict[str, Any]]] = {}
    for channel_id, keys in wanted.items():
        names = sorted({name for name, _ in keys})
        for i in range(0, len(names), QUERY_CHUNK):
            rows = session.execute(
                select(Release.id, Release.name, Release.version, Release.meta).where(
                    Release.channel_id == channel_id, Release.name.in_(names[i : i + QUERY_CHUNK])
                )
            )
            for release_id, name, version, meta in rows:
                if (name, version) in keys:
                    found[(channel_id, name, version)] = (release_id, meta or {})
    return found


def apply_manifest(session: Session, manifest: Manifest) -> CatalogChange:
    """Apply the bundle's releases to the catalog; returns what changed, for the publish."""
    channels = {raw["name"]: _upsert_channel(session, raw, manifest.hub_id) for raw in manifest.channels}
    by_id = {channel.id: channel for channel in channels.values()}
    doomed: set[int] = set()
    changed: list[ReleaseRef] = []
    if manifest.full:
        # A full bundle re-bases: the site holds exactly what it carries from that hub,
        # including nothing from channels the hub no longer has. It may cost the site.
        fed = [c.id for c in session.scalars(select(Channel)) if (c.options or {}).get(SOURCE_HUB) == manifest.hub_id]
        for i in range(0, len(fed), QUERY_CHUNK):
            doomed.update(session.scalars(select(Release.id).where(Release.channel_id.in_(fed[i : i + QUERY_CHUNK]))))
    else:
        wanted: dict[int, set[tuple[str, str]]] = {}
        for rec in [*manifest.removed, *manifest.releases]:
            channel = channels.get(rec["channel"])
            if channel is not None:
                wanted.setdefault(channel.id, set()).add((rec["name"], rec["version"]))
        existing = _existing(session, wanted)
        for (channel_id, name, version), (release_id, meta) in existing.items():
            doomed.add(release_id)
            channel = by_id[channel_id]
            changed.append(ReleaseRef(channel.name, channel.kind, name, version, meta))
    release_rows: list[dict[str, Any]] = []
    artifact_rows: list[list[dict[str, Any]]] = []
    now = utcnow()
    for rec in manifest.releases:
        channel = channels.get(rec["channel"])
        if channel is None:
            raise BundleError(f"release {rec['name']} {rec['version']} names channel {rec['channel']!r} the manifest lacks")
        if not manifest.full:
            changed.append(ReleaseRef(channel.name, channel.kind, rec["name"], rec["version"], rec.get("meta") or {}))
        release_rows.append(
            {
                "channel_id": channel.id,
                "name": rec["name"],
                "display_name": rec["display_name"],
                "version": rec["version"],
                "state": ReleaseState.ACTIVE,
                "gate": _gate(rec.get("gate", "allowed")),
                "gate_reason": rec.get("gate_reason", ""),
                "declared_license": rec.get("declared_license", ""),
                "meta": rec.get("meta") or {},
                "first_seen": now,
                "updated_at": now,
            }
        )
        artifact_rows.append(
            [
                {
                    "filename": a["filename"],
                    "url": str(a.get("url", "")),
                    "sha256": a["sha256"],
                    "size": a.get("size"),
                    "state": ArtifactState.STORED,
                    "error": "",
                    "meta": a.get("meta") or {},
                }
                for a in rec["artifacts"]
            ]
        )
    _delete_releases(session, sorted(doomed))
    change = CatalogChange(manifest.full, changed)
    if not release_rows:
        return change
    # Bulk INSERT ... RETURNING in parameter order: thousands of releases in a few statements.
    ids = session.scalars(insert(Release).returning(Release.id, sort_by_parameter_order=True), release_rows).all()
    rows = [{**artifact, "release_id": rid} for rid, artifacts in zip(ids, artifact_rows, strict=True) for artifact in artifacts]
    if rows:
        session.execute(insert(Artifact), rows)
    return change


def record_dirty_pages(session: Session, catalog: int, change: CatalogChange) -> None:
    """The leaves `change` dirtied, under `catalog`, in the transaction that changed the catalog."""
    if change.full:
        session.add(DirtyPage(catalog=catalog, kind=ALL_LEAVES, leaf=ALL_LEAVES))
        return
    by_kind = {publisher.kind: publisher for publisher in publishers()}
    leaves = {
        (release.kind, leaf)
        for release in change.releases
        if release.kind in by_kind
        for leaf in by_kind[release.kind].pages_for(release)
    }
    if leaves:
        session.execute(insert(DirtyPage), [{"catalog": catalog, "kind": kind, "leaf": leaf} for kind, leaf in sorted(leaves)])


def pending_leaves(session: Session, published: int, catalog: int) -> dict[str, set[str] | None]:
    """kind -> the leaves imports dirtied since `published` (None: all of that kind's)."""
    dirty: dict[str, set[str] | None] = {}
    everything = False
    rows = session.execute(
        select(DirtyPage.kind, DirtyPage.leaf).where(DirtyPage.catalog > published, DirtyPage.catalog <= catalog)
    )
    for kind, leaf in rows:
        if kind == ALL_LEAVES:
            everything = True
        elif leaf == ALL_LEAVES:
            dirty[kind] = None
        else:
            leaves = dirty.setdefault(kind, set())
            if leaves is not None:
                leaves.add(leaf)
    if everything:
        return {publisher.kind: None for publisher in publishers()}
    return dirty


def catch_up_publishing(app: AppContext) -> list[PublishResult] | None:
    """Publish what imports changed since the last publish (also after a kill in between); None when nothing had."""
    with app.db.session() as session:
        generation = session.get(SiteGeneration, 1)
        published = generation.published if generation else 0
        target = generation.catalog if generation else 0
        behind = published < target
        dirty = pending_leaves(session, published, target) if behind else {}
    # A tree never published (a new site, a new publisher) is built whole.
    for publisher in publishers():
        if live_generation(tree_root(app, publisher.kind)) is None and (behind or publisher.kind in dirty):
            dirty[publisher.kind] = None
    if not behind:
        return None
    results = publish_changes(app, dirty)
    with app.db.write_transaction() as session:
        generation = _generation(session)
        generation.published = max(generation.published, target)
        session.execute(delete(DirtyPage).where(DirtyPage.catalog <= generation.published))
    return results




def import_bundle(app: AppContext, folder: Path, *, settle_s: float = SETTLE_S) -> ImportOutcome:
    """Import one bundle folder; a part shorter than the TOC says is still arriving for `settle_s`, then truncated."""
    app.home.require_role("site")
    if not folder.is_dir():
        what = "is not a bundle folder" if folder.exists() else "does not exist"
        raise NotABundle(f"{folder} {what}", hint="pass a folder that `reservoir export` wrote, named reservoir-HUBID-SEQ")
    catch_up_publishing(app)
    signed = read_signed_manifest(folder, app)
    manifest = signed.manifest
    manifest_sha = hashlib.sha256(signed.raw).hexdigest()
    with app.db.session() as session:
        check_hub_key(session, manifest, signed.signer)
        if check_sequence(session, manifest, manifest_sha):
            return ImportOutcome("already", manifest)
    toc = read_toc(folder, manifest)
    check_parts_present(folder, toc, settle_s)
    check_free_space(app.blobs, toc.payload_size)
    check_artifact_blobs(manifest, app.blobs)
    new_blobs = extract_blobs(folder, toc, manifest, app.blobs)
    with app.db.write_transaction() as session:
        # The binding is made in the transaction that records the hub's first import, or not at all.
        if not check_hub_key(session, manifest, signed.signer):
            session.add(HubKey(hub_id=manifest.hub_id, key_fingerprint=signed.signer, bound_by="import"))
        if check_sequence(session, manifest, manifest_sha):
            return ImportOutcome("already", manifest)
        change = apply_manifest(session, manifest)
        session.add(
            ImportedBundle(
                hub_id=manifest.hub_id,
                seq=manifest.seq,
                base=manifest.base,
                full=manifest.full,
                manifest_sha256=manifest_sha,
                key_fingerprint=signed.signer,
                releases=len(manifest.releases),
                removed=len(manifest.removed),
                blobs=len(manifest.blobs),
            )
        )
        generation = _generation(session)
        generation.catalog += 1
        record_dirty_pages(session, generation.catalog, change)
    catch_up_publishing(app)
    return ImportOutcome("imported", manifest, new_blobs)


def move_bundle(folder: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / folder.name
    n = 1
    while dest.exists():
        dest = dest_dir / f"{folder.name}.{n}"
        n += 1
    try:
        os.rename(folder, dest)
    except OSError:
        shutil.move(str(folder), str(dest))
    return dest
