"""OSV advisories: reading JSON files, folders and OSV's per-ecosystem all.zip; matching releases.

Matching follows the OSV schema: a release is affected when its version is
listed in `versions`, or an ECOSYSTEM/SEMVER range's events put it between
an `introduced` and the next `fixed` (exclusive) / `last_affected`
(inclusive), compared in the ecosystem's own version order.
"""

from __future__ import annotations

import functools
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from licenses.security.versions import Compare
from reservoir.errors import ReservoirError

SEVERITIES = ("low", "medium", "high", "critical")
# GHSA and distributions spell severities their own way.
SEVERITY_ALIASES = {"moderate": "medium", "important": "high", "negligible": "low", "minor": "low", "major": "high"}
# An advisory that names no severity is treated as this (an air-gapped site errs on the safe side).
UNKNOWN_SEVERITY = "high"
DEFAULT_ECOSYSTEMS = {"pypi": "PyPI", "cran": "CRAN", "apt": "Debian", "yum": "Red Hat"}


class AdvisoryError(ReservoirError):
    pass


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every OSV record under `path` (a .json file, a folder of them, or a zip); all or nothing."""
    if not path.exists():
        raise AdvisoryError(f"{path}: no such file or folder", hint="pass an OSV .json file, a folder or an all.zip")
    if path.is_dir():
        records = [r for file in sorted(path.rglob("*.json")) for r in _records_of(file.read_bytes(), str(file))]
    elif path.suffix == ".zip":
        records = list(_records_of_zip(path))
    else:
        records = _records_of(path.read_bytes(), str(path))
    return records


def _records_of_zip(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with zipfile.ZipFile(path) as archive:
            for name in sorted(archive.namelist()):
                if name.endswith(".json"):
                    yield from _records_of(archive.read(name), f"{path}:{name}")
    except zipfile.BadZipFile as exc:
        raise AdvisoryError(f"{path}: not a zip archive ({exc})", hint="pass OSV's all.zip as downloaded") from None


def _records_of(data: bytes, where: str) -> list[dict[str, Any]]:
    try:
        parsed = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdvisoryError(f"{where}: not valid JSON ({exc})", hint="nothing was imported") from None
    records = parsed if isinstance(parsed, list) else [parsed]
    for record in records:
        if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"]:
            raise AdvisoryError(f"{where}: not an OSV record (no id)", hint="nothing was imported")
        if not isinstance(record.get("affected", []), list):
            raise AdvisoryError(f"{where}: {record['id']}: 'affected' must be a list", hint="nothing was imported")
    return records


@dataclass(frozen=True)
class Finding:
    """One advisory that affects one release."""

    id: str
    severity: str
    malicious: bool
    fixed: list[str]
    summary: str

    def as_meta(self) -> dict[str, Any]:
        return {"id": self.id, "severity": self.severity, "malicious": self.malicious, "fixed": self.fixed,
                "summary": self.summary}


def is_malicious(record: dict[str, Any]) -> bool:
    return str(record.get("id", "")).startswith("MAL-")


def severity_of(record: dict[str, Any], affected: dict[str, Any] | None = None) -> str:
    """low|medium|high|critical from database_specific/ecosystem_specific, else a CVSS v3/v4 base score."""
    for source in (affected or {}).get("ecosystem_specific") or {}, (affected or {}).get("database_specific") or {}, \
            record.get("database_specific") or {}:
        value = str(source.get("severity") or "").strip().lower()
        value = SEVERITY_ALIASES.get(value, value)
        if value in SEVERITIES:
            return value
    scores = [s for s in (_cvss_score(entry) for entry in record.get("severity") or []) if s is not None]
    if scores:
        return _level(max(scores))
    return "unknown"


def _cvss_score(entry: dict[str, Any]) -> float | None:
    vector = str(entry.get("score") or "")
    kind = entry.get("type")
    try:
        if kind == "CVSS_V3":
            from cvss import CVSS3

            return float(CVSS3(vector).base_score)
        if kind == "CVSS_V4":
            from cvss import CVSS4

            return float(CVSS4(vector).base_score)
    except Exception:  # noqa: BLE001 - a malformed vector leaves the severity unknown, not the import failed
        return None
    return None


def _level(score: float) -> str:
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low"


def at_or_above(severity: str, threshold: str) -> bool:
    effective = UNKNOWN_SEVERITY if severity == "unknown" else severity
    return SEVERITIES.index(effective) >= SEVERITIES.index(threshold)


def ecosystem_matches(osv_ecosystem: str, wanted: str) -> bool:
    """"Debian:12" matches a channel that wants "Debian:12" or just "Debian"."""
    if ":" in wanted:
        return osv_ecosystem == wanted
    return osv_ecosystem.split(":", 1)[0] == wanted


# How an ecosystem compares package names (PEP 503 for PyPI); the others compare them as written.
NAME_FORMS: dict[str, Callable[[str], str]] = {"pypi": canonicalize_name}


def package_name(kind: str, name: str) -> str:
    return NAME_FORMS.get(kind, str)(name)


def findings_for(
    records: list[dict[str, Any]], kind: str, ecosystem: str, name: str, version: str, compare: Compare
) -> list[Finding]:
    found = []
    for record in records:
        if record.get("withdrawn"):
            continue
        for affected in record.get("affected") or []:
            package = affected.get("package") or {}
            if not ecosystem_matches(str(package.get("ecosystem", "")), ecosystem):
                continue
            if package_name(kind, str(package.get("name", ""))) != package_name(kind, name):
                continue
            if is_affected(affected, version, compare):
                found.append(Finding(
                    id=record["id"], severity=severity_of(record, affected), malicious=is_malicious(record),
                    fixed=fixed_versions(affected), summary=str(record.get("summary") or "")[:200],
                ))
                break
    return found


def is_affected(affected: dict[str, Any], version: str, compare: Compare) -> bool:
    if version in (affected.get("versions") or []):
        return True
    return any(
        _in_range(r.get("events") or [], version, compare)
        for r in affected.get("ranges") or [] if r.get("type") in ("ECOSYSTEM", "SEMVER")
    )


def _in_range(events: list[dict[str, str]], version: str, compare: Compare) -> bool:
    def event_version(event: dict[str, str]) -> str:
        return next(iter(event.values()))

    def order(a: dict[str, str], b: dict[str, str]) -> int:
        va, vb = event_version(a), event_version(b)
        if va == "0" or vb == "0":
            return (vb == "0") - (va == "0")
        return compare(va, vb)

    affected = False
    for event in sorted((e for e in events if e and "limit" not in e), key=functools.cmp_to_key(order)):
        if "introduced" in event:
            if event["introduced"] == "0" or compare(version, event["introduced"]) >= 0:
                affected = True
        elif "fixed" in event:
            if compare(version, event["fixed"]) >= 0:
                affected = False
        elif "last_affected" in event:
            if compare(version, event["last_affected"]) > 0:
                affected = False
    return affected


def fixed_versions(affected: dict[str, Any]) -> list[str]:
    return [e["fixed"] for r in affected.get("ranges") or [] for e in r.get("events") or [] if "fixed" in e]
