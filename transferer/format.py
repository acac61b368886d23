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

from reservoir.errors import IntegrityError
from transferer.schema import Ecosystems, FieldError, check_document, installed_ecosystems, integer, list_of, record, sha256, shown, text

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


def _load_json(data: bytes, what: str) -> Any:
    """JSON as bytes from a bundle; anything Python's parser can choke on is a BundleError."""
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise BundleError(f"{what} is not valid JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{what} is not valid JSON ({str(exc)[:120]})") from None


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON, and PostgreSQL's JSON columns refuse them.
    raise ValueError(f"{name} is not a JSON value")


def parse_manifest(data: bytes, ecosystems: Ecosystems | None = None) -> Manifest:
    """The manifest, every field checked against the schema (transferer/schema.py, docs/bundles.md)."""
    doc = _load_json(data, MANIFEST)
    if not isinstance(doc, dict):
        raise BundleError(f"{MANIFEST} is not a JSON object")
    if doc.get("format") != FORMAT:
        raise BundleError(f"{MANIFEST} is not a Reservoir bundle manifest (format {shown(doc.get('format'), 40)})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"bundle format version {shown(doc.get('format_version'), 40)} is not supported (this site reads {FORMAT_VERSION})",
            hint="upgrade Reservoir on the site",
        )
    try:
        check_document(doc, installed_ecosystems() if ecosystems is None else ecosystems)
    except FieldError as exc:
        raise BundleError(f"{MANIFEST}: {exc}") from None
    return Manifest(
        hub_id=doc["hub_id"],
        key_fingerprint=doc["key_fingerprint"],
        seq=doc["seq"],
        base=doc["base"],
        created=doc["created"],
        channels=tuple(doc["channels"]),
        releases=tuple(doc["releases"]),
        removed=tuple(doc["removed"]),
        blobs=tuple(BlobRef(b["sha256"], b["size"]) for b in doc["blobs"]),
        toc_sha256=doc["toc"]["sha256"],
        toc_size=doc["toc"]["size"],
    )


TOC_SCHEMA = record({"parts": list_of(record({
    "name": text(64, pattern=PART_RE, what="a part name (payload.tar.NNN)"), "size": integer(), "sha256": sha256(),
}), 1_000_000)})


def parse_toc(data: bytes) -> Toc:
    """The table of contents, every field checked."""
    try:
        doc = TOC_SCHEMA(_load_json(data, TOC), "")
    except FieldError as exc:
        raise BundleError(f"{TOC}: {exc}") from None
    parts = tuple(PartRef(p["name"], p["size"], p["sha256"]) for p in doc["parts"])
    if len({p.name for p in parts}) != len(parts):
        raise BundleError(f"{TOC}: a part is listed twice")
    return Toc(parts)
