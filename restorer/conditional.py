"""Conditional and range requests (RFC 9110 sections 13 and 14), decided once for both serving layers.

Index pages answer `If-None-Match` only (they have an ETag and no
Last-Modified, and are never served in parts); package files answer every
precondition and a single byte range. aiohttp's ``FileResponse`` only does
the I/O: it is handed a request without the headers decided here, so its
own readings (a 416 for a range it cannot parse, 206 for `bytes=-0`, an
`If-Range` ETag taken for absent) never reach a client.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, as one member of a comma-separated list (empty members allowed).
_LIST_MEMBER = re.compile(r'[ \t]*(?:(W/)?("[\x21\x23-\x7e\x80-\xff]*")[ \t]*)?(,|\Z)')
_BYTE_RANGE = re.compile(r"[ \t]*([0-9]*)-([0-9]*)[ \t]*", re.ASCII)
# More digits than any file size has: compared by length, never converted (int() refuses 4300+ digits).
_MAX_DIGITS = 18
HUGE = 1 << 62

# Headers that make a file request conditional or partial, in any spelling.
CONDITIONAL_HEADERS = ("Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since")


@dataclass(frozen=True)
class EntityTags:
    """A parsed If-Match / If-None-Match value."""

    any: bool  # `*`
    opaque: frozenset[str]  # every listed tag without its W/ (weak comparison)
    strong: frozenset[str]  # the tags listed without W/ (strong comparison)


INVALID = EntityTags(False, frozenset(), frozenset())  # matches nothing: the field is as good as absent


@functools.lru_cache(maxsize=1024)  # clients revalidate with the same few values
def entity_tags(field: str) -> EntityTags:
    field = field.strip(" \t")
    if field == "*":
        return EntityTags(True, frozenset(), frozenset())
    opaque: set[str] = set()
    strong: set[str] = set()
    position = 0
    while True:
        member = _LIST_MEMBER.match(field, position)
        if member is None:
            return INVALID
        weak, tag, separator = member.groups()
        if tag is not None:
            opaque.add(tag)
            if weak is None:
                strong.add(tag)
        if not separator:
            return EntityTags(False, frozenset(opaque), frozenset(strong))
        position = member.end()


def opaque_tag(etag: str) -> str:
    return etag[2:] if etag.startswith("W/") else etag


def none_match(field: str | None, etag: str) -> bool:
    """Whether `If-None-Match` holds the representation tagged `etag` (a GET or HEAD then answers 304)."""
    if field is None:
        return False
    tags = entity_tags(field)
    return tags.any or opaque_tag(etag) in tags.opaque


def if_match_fails(field: str, etag: str) -> bool:
    tags = entity_tags(field)
    return not tags.any and (etag.startswith("W/") or etag not in tags.strong)


def http_date(field: str | None) -> float | None:
    """An HTTP-date as seconds since the epoch, or None when absent or not a date (the field is then ignored)."""
    if not field:
        return None
    try:
        moment = parsedate_to_datetime(field)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


@dataclass(frozen=True)
class ByteRange:
    first: int
    last: int  # inclusive

    @property
    def length(self) -> int:
        return self.last - self.first + 1


UNSATISFIABLE = ByteRange(-1, -2)


def _number(digits: str) -> int:
    return int(digits) if len(digits) <= _MAX_DIGITS else HUGE


def byte_range(field: str | None, size: int) -> ByteRange | None:
    """The one byte range `Range` asks for, UNSATISFIABLE (416), or None to ignore it (200, the whole file).

    Ignored, as RFC 9110 section 14.2 allows or requires: no header, a unit
    other than bytes, a malformed range set, and more than one range (served
    whole rather than as multipart/byteranges).
    """
    if field is None:
        return None
    unit, equals, ranges = field.partition("=")
    if not equals or unit.lower() != "bytes":
        return None
    specs = [spec for spec in ranges.split(",") if spec.strip(" \t")]
    if len(specs) != 1:
        return None
    spec = _BYTE_RANGE.fullmatch(specs[0])
    if spec is None:
        return None
    first_digits, last_digits = spec.groups()
    if first_digits:
        first = _number(first_digits)
        last = _number(last_digits) if last_digits else HUGE
        if last < first:
            return None  # invalid, not unsatisfiable
        if first >= size:
            return UNSATISFIABLE
        return ByteRange(first, min(last, size - 1))
    if not last_digits:
        return None
    suffix = _number(last_digits)
    if suffix == 0 or size == 0:
        return UNSATISFIABLE
    return ByteRange(max(size - suffix, 0), size - 1)


@dataclass(frozen=True)
class FileDecision:
    status: int  # 200, 206, 304, 412 or 416
    range: ByteRange | None = None  # for 206


def decide_file(
    method: str, headers: Mapping[str, str], etag: str, last_modified: str, mtime_s: int, size: int
) -> FileDecision:
    """RFC 9110 section 13.2.2's order of preconditions, then the range, for one package file.

    `last_modified` is the Last-Modified value sent, `mtime_s` the same instant in seconds.
    """
    if_match = headers.get("If-Match")
    if if_match is not None:
        if if_match_fails(if_match, etag):
            return FileDecision(412)
    else:
        unmodified_since = http_date(headers.get("If-Unmodified-Since"))
        if unmodified_since is not None and mtime_s > unmodified_since:
            return FileDecision(412)
    safe = method in ("GET", "HEAD")
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        if none_match(if_none_match, etag):
            return FileDecision(304 if safe else 412)
    elif safe:
        modified_since = http_date(headers.get("If-Modified-Since"))
        if modified_since is not None and mtime_s <= modified_since:
            return FileDecision(304)
    if method != "GET":
        return FileDecision(200)  # range requests are defined for GET only
    wanted = byte_range(headers.get("Range"), size)
    if wanted is None or not if_range_holds(headers.get("If-Range"), etag, last_modified):
        return FileDecision(200)
    if wanted is UNSATISFIABLE:
        return FileDecision(416)
    return FileDecision(206, wanted)


def if_range_holds(field: str | None, etag: str, last_modified: str) -> bool:
    """If-Range (RFC 9110 section 13.1.5): a strong ETag or the exact Last-Modified date; anything else fails."""
    if field is None:
        return True
    field = field.strip(" \t")
    if field.startswith('"') or field.startswith("W/"):
        return field == etag and not etag.startswith("W/")
    return field == last_modified
