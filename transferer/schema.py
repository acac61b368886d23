"""The written schema of a bundle manifest (docs/bundles.md), checked field by field before anything is used.

A check is a callable ``check(value, path) -> value`` that raises
`FieldError` naming the field's path (``releases[3].name``) and what is
wrong with it; checks compose (`record`, `list_of`, `optional`, ...).
What an ecosystem names and versions its packages is not known here: each
ecosystem registers an `EcosystemSchema` under the ``reservoir.ecosystems``
entry-point group, and a manifest channel whose kind has none is refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, Protocol

from reservoir.blobs import SHA256_RE
from reservoir.models import Gate

ECOSYSTEM_GROUP = "reservoir.ecosystems"
# Tables' column widths (reservoir/models.py, restorer/models.py): a longer value would fail the
# insert on PostgreSQL after the payload was read, so it is refused up front.
MAX_NAME = 255
MAX_VERSION = 128
MAX_FILENAME = 255
MAX_CHANNEL = 128
MAX_KIND = 32
MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1
# Bounds on free-form JSON (meta, channel options): deep enough for any real record, shallow
# enough that walking it cannot exhaust the stack, small enough that one record cannot fill memory.
MAX_JSON_DEPTH = 32
MAX_JSON_BYTES = 1 << 20
MAX_TEXT = 1 << 20

CHANNEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# What a hub's instance id looks like (reservoir/home.py: str(uuid.uuid4())).
HUB_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ROLE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# Control characters, lone surrogates (they cannot be encoded to UTF-8) and NUL (PostgreSQL text refuses it).
_BAD_CHARS_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_BAD_LINE_CHARS_RE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


class FieldError(ValueError):
    """A value that breaks the schema: `path` names the field, `reason` what is wrong."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


Check = Callable[[Any, str], Any]


def at(path: str, key: str) -> str:
    """The path of `key` inside the object at `path` ('' is the document itself)."""
    return f"{path}.{key}" if path else key


def shown(value: Any, limit: int = 60) -> str:
    """A hostile value as a message may quote it: short, on one line."""
    text = repr(value) if isinstance(value, str) else type(value).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def text(limit: int = 4096, *, single_line: bool = True, empty: bool = True, pattern: re.Pattern[str] | None = None,
         what: str = "") -> Check:
    """A string of at most `limit` characters, with no control characters (newlines and tabs allowed unless single_line)."""
    bad = _BAD_LINE_CHARS_RE if single_line else _BAD_CHARS_RE

    def check(value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise FieldError(path, f"expected a string, got {shown(value)}")
        if len(value) > limit:
            raise FieldError(path, f"longer than {limit} characters")
        if not value and not empty:
            raise FieldError(path, "must not be empty")
        if bad.search(value):
            raise FieldError(path, f"contains a control character or an invalid one: {shown(value)}")
        if pattern is not None and not pattern.match(value):
            raise FieldError(path, f"not {what or 'valid'}: {shown(value)}")
        return value

    return check


def integer(minimum: int = 0, maximum: int = MAX_INT64) -> Check:
    def check(value: Any, path: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise FieldError(path, f"expected an integer, got {shown(value)}")
        if not minimum <= value <= maximum:
            raise FieldError(path, f"must be between {minimum} and {maximum}, got {shown(value) if value > 10**30 else value}")
        return value

    return check


def number() -> Check:
    def check(value: Any, path: str) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise FieldError(path, f"expected a finite number, got {shown(value)}")
        return value

    return check


def boolean() -> Check:
    def check(value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise FieldError(path, f"expected true or false, got {shown(value)}")
        return value

    return check


def one_of(*values: str) -> Check:
    def check(value: Any, path: str) -> str:
        if not isinstance(value, str) or value not in values:
            raise FieldError(path, f"expected one of {', '.join(values)}, got {shown(value)}")
        return value

    return check


def optional(inner: Check) -> Check:
    """`inner`, or null."""

    def check(value: Any, path: str) -> Any:
        return None if value is None else inner(value, path)

    return check


def either(*choices: Check, what: str) -> Check:
    """The first of `choices` that accepts the value."""

    def check(value: Any, path: str) -> Any:
        for choice in choices:
            try:
                return choice(value, path)
            except FieldError:
                continue
        raise FieldError(path, f"expected {what}, got {shown(value)}")

    return check


def sha256() -> Check:
    def check(value: Any, path: str) -> str:
        if not isinstance(value, str) or not SHA256_RE.match(value):
            raise FieldError(path, f"not a sha256 digest: {shown(value)}")
        return value

    return check


def timestamp() -> Check:
    """ISO 8601 with a time zone, as the hub writes it (`datetime.isoformat`)."""
    base = text(64)

    def check(value: Any, path: str) -> str:
        base(value, path)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise FieldError(path, f"not an ISO 8601 timestamp: {shown(value)}") from None
        if parsed.tzinfo is None:
            raise FieldError(path, f"timestamp has no time zone: {shown(value)}")
        return value

    return check


def list_of(item: Check, limit: int = 1 << 20) -> Check:
    def check(value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise FieldError(path, f"expected a list, got {shown(value)}")
        if len(value) > limit:
            raise FieldError(path, f"more than {limit} entries")
        return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

    return check


def json_value(max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Check:
    """Free-form JSON, bounded: objects with string keys, lists, finite numbers, strings, booleans, null."""
    key_check = text(1024)
    string_check = text(max_bytes, single_line=False)
    number_check = number()
    int_check = integer(-MAX_INT64, MAX_INT64)

    def walk(value: Any, path: str, depth: int, budget: list[int]) -> None:
        budget[0] -= 8
        if budget[0] < 0:
            raise FieldError(path, f"larger than {max_bytes} bytes")
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, int):
            int_check(value, path)
        elif isinstance(value, float):
            number_check(value, path)
        elif isinstance(value, str):
            budget[0] -= len(value)
            string_check(value, path)
        elif depth >= max_depth:
            raise FieldError(path, f"nested deeper than {max_depth} levels")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]", depth + 1, budget)
        elif isinstance(value, dict):
            for k, v in value.items():
                key_check(k, f"{path} key")
                budget[0] -= len(k)
                walk(v, at(path, k), depth + 1, budget)
        else:
            raise FieldError(path, f"not a JSON value: {shown(value)}")
        if budget[0] < 0:
            raise FieldError(path, f"larger than {max_bytes} bytes")

    def check(value: Any, path: str) -> Any:
        walk(value, path, 0, [max_bytes])
        return value

    return check


def record(required: Mapping[str, Check], optional_keys: Mapping[str, Check] | None = None, *,
           extra: Check | None = None) -> Check:
    """A JSON object with these keys. Unknown keys are refused, or checked with `extra` where given."""
    optional_keys = optional_keys or {}

    def check(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise FieldError(path, f"expected an object, got {shown(value)}")
        for key, key_check in required.items():
            if key not in value:
                raise FieldError(at(path, key), "missing")
            key_check(value[key], at(path, key))
        for key, item in value.items():
            if key in required:
                continue
            if key in optional_keys:
                optional_keys[key](item, at(path, key))
            elif extra is not None:
                KEY(key, f"{path} key")
                extra(item, at(path, key))
            else:
                raise FieldError(path, f"unknown field {shown(key)}")
        return value

    return check


KEY = text(1024)


def mapping_of(key: Check, item: Check, limit: int = 1024) -> Check:
    def check(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise FieldError(path, f"expected an object, got {shown(value)}")
        if len(value) > limit:
            raise FieldError(path, f"more than {limit} entries")
        for k, v in value.items():
            key(k, f"{path} key")
            item(v, f"{path}.{k}")
        return value

    return check


def an_object() -> Check:
    """Any JSON object (its content is checked elsewhere)."""

    def check(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise FieldError(path, f"expected an object, got {shown(value)}")
        return value

    return check


def path_component(limit: int, what: str) -> Check:
    """One component of a path: no separator, not `.` or `..`, no control characters."""
    base = text(limit, empty=False)

    def check(value: Any, path: str) -> str:
        base(value, path)
        if value in (".", "..") or "/" in value or "\\" in value:
            raise FieldError(path, f"unsafe {what} {shown(value)}")
        return value

    return check


# --- Ecosystems -------------------------------------------------------------------------------


class EcosystemSchema(Protocol):
    """What one ecosystem accepts for its names, versions and files; registered under ``reservoir.ecosystems``.

    The `check_*` methods raise ValueError with a short reason; the manifest reader adds the field's
    path. The meta maps type the keys of Release.meta and Artifact.meta that the site reads (each a
    check of this module); other keys are free, bounded JSON.
    """

    kind: str
    release_meta: Mapping[str, Check]
    artifact_meta: Mapping[str, Check]

    def check_name(self, name: str) -> None: ...

    def check_version(self, version: str) -> None: ...

    def check_filename(self, filename: str, name: str, version: str) -> None: ...


Ecosystems = Mapping[str, EcosystemSchema]


@lru_cache(maxsize=1)
def _discovered() -> tuple[tuple[str, EcosystemSchema], ...]:
    # Installed entry points do not change while a process runs; reading them per manifest would
    # cost more than the manifest's own checks on small bundles.
    return tuple((ep.name, ep.load()) for ep in sorted(entry_points(group=ECOSYSTEM_GROUP), key=lambda ep: ep.name))


def installed_ecosystems() -> dict[str, EcosystemSchema]:
    """The ecosystem schemas installed here, by channel kind."""
    return dict(_discovered())


def ecosystem_check(path: str, method: Callable[..., None], *args: str) -> None:
    """Run one of an ecosystem's checks; its ValueError becomes a FieldError at `path`."""
    try:
        method(*args)
    except FieldError:
        raise
    except ValueError as exc:
        raise FieldError(path, str(exc) or "invalid") from None


# --- meta.vetting -----------------------------------------------------------------------------
# What license and security vetting (licenses/) records in Release.meta["vetting"]; it travels in
# bundles and the site's reports read it. Keys a reader indexes are required, the rest typed where
# present; unknown keys are free, bounded JSON (a newer vetter may add some). The vocabularies
# mirror licenses/ (a test keeps them equal): the transferer must not need the licenses component.

CATEGORIES = ("permissive", "weak-copyleft", "copyleft", "network-copyleft", "unknown", "proprietary")
POLICY_DECISIONS = ("allow", "review", "deny")
REVIEW_DECISIONS = ("approve", "reject")
SEVERITIES = ("low", "medium", "high", "critical")
LICENSE_TEXT = optional(text(MAX_TEXT, single_line=False))


@dataclass(frozen=True)
class EvidenceRecord:
    file: str | None = None
    sha256: str | None = None
    spdx: str | None = None
    start_line: int | None = None
    end_line: int | None = None
    score: float | None = None
    rule: str | None = None
    note: str = ""


@dataclass(frozen=True)
class DecisionRecord:
    """An admin's review: who decided what, when and why."""

    who: str
    when: str
    decision: str  # REVIEW_DECISIONS
    reason: str


@dataclass(frozen=True)
class AdvisoryRecord:
    id: str
    severity: str = "high"
    malicious: bool = False
    fixed: tuple[str, ...] = ()
    summary: str = ""


@dataclass(frozen=True)
class PolicyRecord:
    decision: str  # POLICY_DECISIONS
    reason: str


@dataclass(frozen=True)
class VettingRecord:
    declared: str | None = None
    declared_raw: str | None = None
    detected: str | None = None
    concluded: str | None = None
    category: str | None = None
    evidence: tuple[EvidenceRecord, ...] = ()
    decisions: tuple[DecisionRecord, ...] = ()
    advisories: tuple[AdvisoryRecord, ...] = ()
    policy: PolicyRecord | None = None
    disagreement: bool = False


FREE = json_value()
EVIDENCE = record({}, {
    "file": optional(text(4096)), "sha256": optional(text(64)), "spdx": LICENSE_TEXT,
    "start_line": optional(integer()), "end_line": optional(integer()), "score": optional(number()),
    "rule": optional(text(4096)), "note": text(1 << 16, single_line=False),
}, extra=FREE)
DECISION = record({"who": text(256, empty=False), "when": timestamp(), "decision": one_of(*REVIEW_DECISIONS),
                   "reason": text(1 << 16, single_line=False)}, extra=FREE)
ADVISORY = record({"id": text(256, empty=False)}, {
    "severity": one_of(*SEVERITIES), "malicious": boolean(), "fixed": list_of(text(MAX_VERSION), 4096),
    "summary": text(1 << 16, single_line=False),
}, extra=FREE)
POLICY = record({"decision": one_of(*POLICY_DECISIONS), "reason": text(1 << 16, single_line=False)}, extra=FREE)
VETTING = record({}, {
    "declared": LICENSE_TEXT, "declared_raw": LICENSE_TEXT, "detected": LICENSE_TEXT, "concluded": LICENSE_TEXT,
    "category": optional(one_of(*CATEGORIES)), "evidence": list_of(EVIDENCE, 100_000),
    "decisions": list_of(DECISION, 10_000), "advisories": list_of(ADVISORY, 10_000), "policy": optional(POLICY),
    "disagreement": boolean(),
}, extra=FREE)


def _known(cls: type, raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}  # type: ignore[attr-defined]


def parse_vetting(value: Any, path: str = "meta.vetting") -> VettingRecord:
    """The typed vetting record; raises FieldError naming the first field that breaks the schema."""
    raw = VETTING(value, path)
    policy = raw.get("policy")
    return VettingRecord(
        declared=raw.get("declared"), declared_raw=raw.get("declared_raw"), detected=raw.get("detected"),
        concluded=raw.get("concluded"), category=raw.get("category"),
        evidence=tuple(EvidenceRecord(**_known(EvidenceRecord, e)) for e in raw.get("evidence") or ()),
        decisions=tuple(DecisionRecord(**_known(DecisionRecord, d)) for d in raw.get("decisions") or ()),
        advisories=tuple(AdvisoryRecord(**{**_known(AdvisoryRecord, a), "fixed": tuple(a.get("fixed") or ())})
                         for a in raw.get("advisories") or ()),
        policy=PolicyRecord(**_known(PolicyRecord, policy)) if policy else None,
        disagreement=bool(raw.get("disagreement", False)),
    )


# --- The manifest -----------------------------------------------------------------------------

AUX_BLOBS = mapping_of(text(32, pattern=ROLE_RE, what="a role name"), sha256(), limit=16)
CHANNEL_NAME = text(MAX_CHANNEL, pattern=CHANNEL_NAME_RE, what="a channel name (letters, digits, . _ -)")
CHANNEL = record(
    {"name": CHANNEL_NAME, "kind": text(MAX_KIND, empty=False)},
    {"upstream": text(4096), "options": record({}, extra=json_value())},
)
NAME = path_component(MAX_NAME, "name")
VERSION = path_component(MAX_VERSION, "version")
META_JSON = json_value()


def check_meta(value: Any, path: str, typed: Mapping[str, Check]) -> dict[str, Any]:
    """Bounded JSON whose `typed` keys, where present, pass their checks."""
    META_JSON(value, path)
    if not isinstance(value, dict):
        raise FieldError(path, f"expected an object, got {shown(value)}")
    for key, key_check in typed.items():
        if key in value:
            key_check(value[key], f"{path}.{key}")
    return value


ARTIFACT = record(
    {"filename": path_component(MAX_FILENAME, "file name"), "sha256": sha256()},
    {"size": optional(integer()), "url": text(8192), "meta": an_object()},
)
RELEASE = record(
    {"channel": CHANNEL_NAME, "name": NAME, "display_name": text(MAX_NAME), "version": VERSION,
     "artifacts": list_of(ARTIFACT, 100_000)},
    {"gate": one_of(*(g.value for g in Gate)), "gate_reason": text(1 << 16, single_line=False),
     "declared_license": text(MAX_TEXT, single_line=False), "meta": an_object()},
)


def check_release(raw: Any, path: str, channels: Mapping[str, EcosystemSchema]) -> dict[str, Any]:
    rec = RELEASE(raw, path)
    schema = channels.get(rec["channel"])
    if schema is None:
        raise FieldError(f"{path}.channel", f"names channel {shown(rec['channel'])}, which the manifest does not list")
    ecosystem_check(f"{path}.name", schema.check_name, rec["name"])
    ecosystem_check(f"{path}.version", schema.check_version, rec["version"])
    check_meta(rec.get("meta", {}), f"{path}.meta", {**schema.release_meta, "vetting": parse_vetting})
    filenames: set[str] = set()
    for j, artifact in enumerate(rec["artifacts"]):
        where = f"{path}.artifacts[{j}]"
        if artifact["filename"] in filenames:
            raise FieldError(f"{where}.filename", f"{shown(artifact['filename'])} is listed twice in this release")
        filenames.add(artifact["filename"])
        ecosystem_check(f"{where}.filename", schema.check_filename, artifact["filename"], rec["name"], rec["version"])
        check_meta(artifact.get("meta", {}), f"{where}.meta", {**schema.artifact_meta, "aux_blobs": AUX_BLOBS})
    return rec


REMOVED = record({"channel": CHANNEL_NAME, "name": NAME, "version": VERSION})


def check_removed(raw: Any, path: str, channels: Mapping[str, EcosystemSchema]) -> dict[str, Any]:
    rec = REMOVED(raw, path)
    # A channel the hub dropped is no longer in the manifest: its records keep the generic checks.
    schema = channels.get(rec["channel"])
    if schema is not None:
        ecosystem_check(f"{path}.name", schema.check_name, rec["name"])
        ecosystem_check(f"{path}.version", schema.check_version, rec["version"])
    return rec


def check_channels(raw: Any, ecosystems: Ecosystems) -> dict[str, EcosystemSchema]:
    """The manifest's channels' ecosystems, by channel name."""
    kinds: dict[str, EcosystemSchema] = {}
    for i, channel in enumerate(list_of(CHANNEL, 4096)(raw, "channels")):
        path = f"channels[{i}]"
        if channel["name"] in kinds:
            raise FieldError(f"{path}.name", f"channel {shown(channel['name'])} is listed twice")
        schema = ecosystems.get(channel["kind"])
        if schema is None:
            known = ", ".join(sorted(ecosystems)) or "none"
            raise FieldError(f"{path}.kind", f"unknown ecosystem {shown(channel['kind'])} (this site knows: {known}; "
                                             "upgrade Reservoir on the site or install the ecosystem's adapter)")
        kinds[channel["name"]] = schema
    return kinds


BLOB = record({"sha256": sha256(), "size": integer()})
TOC_REF = record({"sha256": sha256(), "size": integer(0, 1 << 30)})
ANY: Check = lambda value, path: value  # noqa: E731  (checked on their own below)
DOCUMENT = record({
    "format": ANY, "format_version": ANY,
    "hub_id": text(36, pattern=HUB_ID_RE, what="a hub id (a UUID, as `reservoir init` makes it)"),
    "key_fingerprint": sha256(), "seq": integer(1, MAX_INT32), "base": integer(0, MAX_INT32), "created": timestamp(),
    "channels": ANY, "releases": ANY, "removed": ANY, "blobs": list_of(BLOB, 10_000_000), "toc": TOC_REF,
})


def check_document(doc: Any, ecosystems: Ecosystems) -> dict[str, Any]:
    """Every field of a manifest document (format and version aside); returns it; raises FieldError."""
    DOCUMENT(doc, "")
    if doc["base"] >= doc["seq"]:
        raise FieldError("base", f"{doc['base']} must be below seq {doc['seq']}")
    channels = check_channels(doc["channels"], ecosystems)
    releases = list_of(lambda r, p: check_release(r, p, channels), 10_000_000)(doc["releases"], "releases")
    seen: set[tuple[str, str, str]] = set()
    for i, rec in enumerate(releases):
        key = (rec["channel"], rec["name"], rec["version"])
        if key in seen:
            raise FieldError(f"releases[{i}]", f"{rec['name']} {rec['version']} of channel {rec['channel']} is listed twice")
        seen.add(key)
    list_of(lambda r, p: check_removed(r, p, channels), 10_000_000)(doc["removed"], "removed")
    digests: set[str] = set()
    for i, blob in enumerate(doc["blobs"]):
        if blob["sha256"] in digests:
            raise FieldError(f"blobs[{i}].sha256", f"{blob['sha256']} is listed twice")
        digests.add(blob["sha256"])
    return doc
