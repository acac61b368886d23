"""Applying advisories to the store: a hub quarantines, a site flags what it serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from licenses.models import Advisory
from licenses.security.osv import DEFAULT_ECOSYSTEMS, SEVERITIES, Finding, at_or_above, findings_for, read_records
from licenses.security.versions import COMPARATORS
from licenses.vetter import license_gate
from reservoir.context import AppContext
from reservoir.errors import ConfigError
from reservoir.models import Gate, Release, utcnow


@dataclass
class ImportResult:
    imported: int = 0
    withdrawn: int = 0
    quarantined: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)


def quarantine_threshold(section: dict[str, Any]) -> str:
    value = str(section.get("quarantine_severity", "high")).lower()
    if value not in SEVERITIES:
        raise ConfigError(f"reservoir.toml [security] quarantine_severity: {value!r} is not a severity",
                          hint=f"one of {', '.join(SEVERITIES)}")
    return value


def store_records(session: Session, records: list[dict[str, Any]]) -> int:
    """Insert or replace advisories by id (a newer `modified` replaces an older one)."""
    stored = 0
    for record in records:
        row = session.get(Advisory, record["id"])
        modified = str(record.get("modified") or "")
        if row is not None and row.modified > modified:
            continue
        if row is None:
            row = Advisory(id=record["id"])
            session.add(row)
        row.modified, row.withdrawn, row.record, row.imported_at = modified, bool(record.get("withdrawn")), record, utcnow()
        stored += 1
    return stored


def evaluate_store(session: Session, *, quarantine: bool, threshold: str) -> ImportResult:
    """Match every release against every stored advisory and record the findings."""
    records = [a.record for a in session.scalars(select(Advisory).where(Advisory.withdrawn.is_(False)))]
    result = ImportResult()
    for release in session.scalars(select(Release).options(selectinload(Release.channel))):
        kind = release.channel.kind
        if kind not in COMPARATORS:
            continue
        ecosystem = str((release.channel.options or {}).get("osv_ecosystem") or DEFAULT_ECOSYSTEMS[kind])
        findings = findings_for(records, kind, ecosystem, release.name, release.version, COMPARATORS[kind])
        apply_findings(release, findings, quarantine, threshold, result)
    return result


def apply_findings(release: Release, findings: list[Finding], quarantine: bool, threshold: str,
                   result: ImportResult) -> None:
    vetting = dict((release.meta or {}).get("vetting") or {})
    if not findings and not vetting.get("advisories") and release.gate is not Gate.QUARANTINED:
        return
    vetting["advisories"] = [f.as_meta() for f in findings]
    release.meta = {**(release.meta or {}), "vetting": vetting}
    label = f"{release.name}=={release.version}"
    blocking = [f for f in findings if f.malicious or at_or_above(f.severity, threshold)]
    if not quarantine:
        if findings:
            result.flagged.append(label)
        return
    if blocking:
        if release.gate is not Gate.QUARANTINED:
            result.quarantined.append(label)
        release.gate = Gate.QUARANTINED
        release.gate_reason = "; ".join(_reason(f) for f in blocking)
    elif release.gate is Gate.QUARANTINED:
        release.gate, release.gate_reason = license_gate(release)
        result.released.append(label)


def _reason(finding: Finding) -> str:
    what = "malicious package" if finding.malicious else f"{finding.severity} severity"
    fixed = f"fixed in {', '.join(finding.fixed)}" if finding.fixed else "no fixed version"
    return f"advisory {finding.id} ({what}): {fixed}"


def import_advisories(app: AppContext, path: Path) -> ImportResult:
    """Read (all or nothing), store, and re-evaluate every release in the store."""
    records = read_records(path)
    threshold = quarantine_threshold(app.home.section("security"))
    hub = app.home.role == "hub"
    with app.db.write_transaction() as session:
        imported = store_records(session, records)
        result = evaluate_store(session, quarantine=hub, threshold=threshold)
    result.imported = imported
    result.withdrawn = sum(1 for r in records if r.get("withdrawn"))
    return result


def vet(app: AppContext, release_ids: list[int]) -> None:
    """The security vetter for newly fetched releases: quarantine what stored advisories say is affected."""
    if not release_ids:
        return
    threshold = quarantine_threshold(app.home.section("security"))
    with app.db.write_transaction() as session:
        records = [a.record for a in session.scalars(select(Advisory).where(Advisory.withdrawn.is_(False)))]
        if not records:
            return
        result = ImportResult()
        for release in session.scalars(select(Release).where(Release.id.in_(release_ids)).options(selectinload(Release.channel))):
            kind = release.channel.kind
            if kind not in COMPARATORS:
                continue
            ecosystem = str((release.channel.options or {}).get("osv_ecosystem") or DEFAULT_ECOSYSTEMS[kind])
            apply_findings(release, findings_for(records, kind, ecosystem, release.name, release.version,
                                                 COMPARATORS[kind]), True, threshold, result)
