"""The bundle format (see docs/bundles.md).

A bundle is a folder::

    manifest.json       what the bundle carries (schema below), signed
    manifest.json.sig   Ed25519 signature of manifest.json's exact bytes
    toc.json            the payload parts: name, size, sha256 (its digest is in the manifest)
    payload.tar.000 ... an uncompressed tar of `blobs/<sha256>` members, split into parts

Everything read from a bundle is hostile until checked: `parse_manifest`
and `parse_toc` validate every field and refuse path tricks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from reservoir.blobs import SHA256_RE
from reservoir.errors import IntegrityError

FORMAT = "reservoir-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
TOC = "toc.json"
PART_PREFIX = "payload.tar."
PART_RE = re.compile(r"^payload\.tar\.\d{3,6}$")
# Room for tens of thousands of releases (1-4 KiB each in the JSON); also the most an unsigned file makes a site read.
MAX_MANIFEST_BYTES = 64 << 20
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class BundleError(IntegrityError):
    """A bundle is malformed, corrupt, or not for this site."""


def parse_size(text: str) -> int:
    """'4G', '512M', '10K', '1048576' -> bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text.upper())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"not a size: {text!r} (examples: 4G, 650M, 100K)")
    return int(match.group(1)) * SIZE_UNITS[match.group(2)]


def bundle_dir_name(hub_id: str, seq: int) -> str:
    return f"reservoir-{hub_id[:8]}-{seq:06d}"


def safe_filename(value: Any, what: str) -> str:
    """A file name from a bundle: one path component, no tricks."""
    if not isinstance(value, str) or not value or value in (".", "..") or "/" in value or "\\" in value or "\0" in value:
        raise BundleError(f"{what}: unsafe file name {str(value)[:80]!r}")
    if len(value) > 255 or any(ord(c) < 32 for c in value):
        raise BundleError(f"{what}: unsafe file name {value[:80]!r}")
    return value


def _sha(value: Any, what: str) -> str:
    if not isinstance(value, str) or not SHA256_RE.match(value):
        raise BundleError(f"{what}: not a sha256 digest: {str(value)[:80]!r}")
    return value


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BundleError(f"{what}: expected an integer >= {minimum}, got {str(value)[:40]!r}")
    return value


def _str(value: Any, what: str, limit: int = 4096) -> str:
    if not isinstance(value, str) or len(value) > limit or "\0" in value:
        raise BundleError(f"{what}: expected a string")
    return value


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BundleError(f"{what}: expected an object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BundleError(f"{what}: expected a list")
    return value


@dataclass(frozen=True)
class BlobRef:
    sha256: str
    size: int


@dataclass(frozen=True)
class PartRef:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Toc:
    parts: tuple[PartRef, ...]

    @property
    def payload_size(self) -> int:
        return sum(p.size for p in self.parts)

    def to_json(self) -> bytes:
        return json.dumps(
            {"parts": [{"name": p.name, "size": p.size, "sha256": p.sha256} for p in self.parts]}, indent=1
        ).encode()


@dataclass(frozen=True)
class Manifest:
    hub_id: str
    key_fingerprint: str
    seq: int
    base: int
    created: str
    channels: tuple[dict[str, Any], ...]
    releases: tuple[dict[str, Any], ...]
    removed: tuple[dict[str, Any], ...]
    blobs: tuple[BlobRef, ...]
    toc_sha256: str
    toc_size: int

    @property
    def full(self) -> bool:
        return self.base == 0

    @property
    def label(self) -> str:
        return f"bundle {self.seq} of hub {self.hub_id[:8]}"

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "hub_id": self.hub_id,
            "key_fingerprint": self.key_fingerprint,
            "seq": self.seq,
            "base": self.base,
            "created": self.created,
            "channels": list(self.channels),
            "releases": list(self.releases),
            "removed": list(self.removed),
            "blobs": [{"sha256": b.sha256, "size": b.size} for b in self.blobs],
            "toc": {"sha256": self.toc_sha256, "size": self.toc_size},
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode()


def _parse_release(raw: Any, where: str) -> dict[str, Any]:
    release = _dict(raw, where)
    for key in ("channel", "name", "display_name", "version"):
        _str(release.get(key), f"{where}.{key}", 512)
    for key in ("gate", "gate_reason", "declared_license", "state"):
        if key in release:
            _str(release[key], f"{where}.{key}", 1 << 16)
    _dict(release.get("meta", {}), f"{where}.meta")
    artifacts = _list(release.get("artifacts"), f"{where}.artifacts")
    for i, artifact in enumerate(artifacts):
        a = _dict(artifact, f"{where}.artifacts[{i}]")
        safe_filename(a.get("filename"), f"{where}.artifacts[{i}].filename")
        _sha(a.get("sha256"), f"{where}.artifacts[{i}].sha256")
        if a.get("size") is not None:
            _int(a.get("size"), f"{where}.artifacts[{i}].size")
        meta = _dict(a.get("meta", {}), f"{where}.artifacts[{i}].meta")
        for role, sha in _dict(meta.get("aux_blobs", {}), f"{where}.artifacts[{i}].meta.aux_blobs").items():
            _sha(sha, f"{where}.artifacts[{i}].meta.aux_blobs.{role}")
    return release


def parse_manifest(data: bytes) -> Manifest:
    try:
        doc = _dict(json.loads(data), "manifest")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"manifest.json is not valid JSON ({exc})") from exc
    if doc.get("format") != FORMAT:
        raise BundleError(f"manifest.json is not a Reservoir bundle manifest (format {str(doc.get('format'))[:40]!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"bundle format version {doc.get('format_version')!r} is not supported (this site reads {FORMAT_VERSION})",
            hint="upgrade Reservoir on the site",
        )
    seq = _int(doc.get("seq"), "manifest.seq", 1)
    base = _int(doc.get("base"), "manifest.base")
    if base >= seq:
        raise BundleError(f"manifest: base {base} must be below seq {seq}")
    channels = tuple(_dict(c, f"channels[{i}]") for i, c in enumerate(_list(doc.get("channels"), "manifest.channels")))
    for i, channel in enumerate(channels):
        _str(channel.get("name"), f"channels[{i}].name", 128)
        _str(channel.get("kind"), f"channels[{i}].kind", 32)
    releases = tuple(_parse_release(r, f"releases[{i}]") for i, r in enumerate(_list(doc.get("releases"), "manifest.releases")))
    removed = tuple(_dict(r, f"removed[{i}]") for i, r in enumerate(_list(doc.get("removed"), "manifest.removed")))
    for i, r in enumerate(removed):
        for key in ("channel", "name", "version"):
            _str(r.get(key), f"removed[{i}].{key}", 512)
    blobs = []
    for i, raw in enumerate(_list(doc.get("blobs"), "manifest.blobs")):
        b = _dict(raw, f"blobs[{i}]")
        blobs.append(BlobRef(_sha(b.get("sha256"), f"blobs[{i}].sha256"), _int(b.get("size"), f"blobs[{i}].size")))
    toc = _dict(doc.get("toc"), "manifest.toc")
    return Manifest(
        hub_id=_str(doc.get("hub_id"), "manifest.hub_id", 64),
        key_fingerprint=_str(doc.get("key_fingerprint"), "manifest.key_fingerprint", 64),
        seq=seq,
        base=base,
        created=_str(doc.get("created"), "manifest.created", 64),
        channels=channels,
        releases=releases,
        removed=removed,
        blobs=tuple(blobs),
        toc_sha256=_sha(toc.get("sha256"), "manifest.toc.sha256"),
        toc_size=_int(toc.get("size"), "manifest.toc.size"),
    )


def parse_toc(data: bytes) -> Toc:
    try:
        doc = _dict(json.loads(data), "toc")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"toc.json is not valid JSON ({exc})") from exc
    parts = []
    for i, raw in enumerate(_list(doc.get("parts"), "toc.parts")):
        p = _dict(raw, f"toc.parts[{i}]")
        name = safe_filename(p.get("name"), f"toc.parts[{i}].name")
        if not PART_RE.match(name):
            raise BundleError(f"toc.parts[{i}]: unexpected part name {name[:80]!r}")
        parts.append(PartRef(name, _int(p.get("size"), f"toc.parts[{i}].size"), _sha(p.get("sha256"), f"toc.parts[{i}].sha256")))
    return Toc(tuple(parts))
