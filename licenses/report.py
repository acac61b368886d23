"""License reports: html (what an admin reads), json, csv and an SPDX 2.3 document.

Everything is built from the catalog alone (releases and their
meta["vetting"]), so a site renders the same report from what its bundles
carried: `render_html(session)` is what `/admin/licenses` serves.
"""

from __future__ import annotations

import csv
import html
import io
import json
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from licenses.categories import Category
from licenses.declared import license_ids
from licenses.review import blocked_by
from reservoir.models import Release, ReleaseState
from transferer.schema import AdvisoryRecord, DecisionRecord, EvidenceRecord, FieldError, VettingRecord, parse_vetting


@dataclass
class ReportRow:
    channel: str
    name: str
    version: str
    gate: str
    gate_reason: str
    declared: str | None
    declared_raw: str
    detected: str | None
    concluded: str | None
    category: str
    evidence: list[EvidenceRecord] = field(default_factory=list)
    decisions: list[DecisionRecord] = field(default_factory=list)
    advisories: list[AdvisoryRecord] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    # Why meta["vetting"] could not be read (a record stored before bundles were checked); "" when it was.
    vetting_error: str = ""


def read_vetting(meta: dict[str, Any] | None) -> tuple[VettingRecord, str]:
    """A release's vetting record through the bundle schema, and why it is unreadable ("" when it is not)."""
    try:
        return parse_vetting((meta or {}).get("vetting") or {}, "vetting"), ""
    except FieldError as exc:
        return VettingRecord(), f"unreadable vetting record: {exc}"


def report_rows(session: Session) -> list[ReportRow]:
    releases = list(session.scalars(
        select(Release).where(Release.state == ReleaseState.ACTIVE)
        .options(selectinload(Release.channel), selectinload(Release.artifacts))
    ))
    blocks = blocked_by(releases)
    rows = []
    for release in sorted(releases, key=lambda r: (r.channel.name, r.name, r.version)):
        vetting, problem = read_vetting(release.meta)
        rows.append(ReportRow(
            channel=release.channel.name, name=release.name, version=release.version,
            gate=release.gate.value, gate_reason=release.gate_reason,
            declared=vetting.declared, declared_raw=vetting.declared_raw or release.declared_license,
            detected=vetting.detected, concluded=vetting.concluded,
            category=vetting.category or Category.UNKNOWN.value,
            evidence=list(vetting.evidence), decisions=list(vetting.decisions),
            advisories=list(vetting.advisories), blocks=blocks.get(release.id, []),
            sha256=sorted(a.sha256 for a in release.artifacts), vetting_error=problem,
        ))
    return rows


def render_json(session: Session) -> str:
    rows = report_rows(session)
    return json.dumps({"totals": totals(rows), "releases": [asdict(r) for r in rows]}, indent=2) + "\n"


def render_csv(session: Session) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["channel", "name", "version", "gate", "category", "declared", "detected", "concluded",
                     "gate_reason", "advisories", "blocks"])
    for r in report_rows(session):
        writer.writerow([r.channel, r.name, r.version, r.gate, r.category, r.declared or "", r.detected or "",
                         r.concluded or "", r.gate_reason, " ".join(a.id for a in r.advisories),
                         " ".join(r.blocks)])
    return out.getvalue()


def totals(rows: list[ReportRow]) -> dict[str, dict[str, int]]:
    return {
        "category": dict(Counter(r.category for r in rows)),
        "gate": dict(Counter(r.gate for r in rows)),
    }


# --- HTML ---------------------------------------------------------------------

PAGE_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
.held{background:#fff6d5}.denied{background:#fde0e0}.quarantined{background:#f3d0f0}
details pre{white-space:pre-wrap;font-size:.85em}.totals span{margin-right:1.5em}
"""

FILTER_SCRIPT = """
function applyFilters(){const f={};document.querySelectorAll('select[data-filter]').forEach(s=>f[s.dataset.filter]=s.value);
document.querySelectorAll('tbody tr').forEach(tr=>{tr.hidden=Object.entries(f).some(([k,v])=>v&&tr.dataset[k]!==v);});}
document.querySelectorAll('select[data-filter]').forEach(s=>s.addEventListener('change',applyFilters));
"""


def render_html(session: Session) -> str:
    """The admin's license page: totals, a table filterable by channel, category and status, evidence on demand."""
    rows = report_rows(session)
    counts = totals(rows)
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Licenses</title>",
        f"<style>{PAGE_STYLE}</style></head><body><h1>Licenses</h1>",
        "<p class='totals'>" + "".join(f"<span>{e(k)}: <b>{v}</b></span>" for k, v in sorted(counts["category"].items())) + "</p>",
        "<p class='totals'>" + "".join(f"<span>{e(k)}: <b>{v}</b></span>" for k, v in sorted(counts["gate"].items())) + "</p>",
        "<p>",
        _filter("channel", sorted({r.channel for r in rows})),
        _filter("category", [c.value for c in Category]),
        _filter("status", ["allowed", "held", "denied", "quarantined"]),
        "</p><table><thead><tr><th>channel</th><th>package</th><th>version</th><th>status</th><th>category</th>"
        "<th>concluded</th><th>declared</th><th>detected</th><th>details</th></tr></thead><tbody>",
    ]
    parts += [_row_html(r) for r in rows]
    parts += ["</tbody></table>", f"<script>{FILTER_SCRIPT}</script></body></html>"]
    return "\n".join(parts)


def _filter(name: str, values: list[str]) -> str:
    options = "".join(f"<option value='{html.escape(v)}'>{html.escape(v)}</option>" for v in values)
    return f"<label>{name} <select data-filter='{name}'><option value=''>all</option>{options}</select></label> "


def _row_html(r: ReportRow) -> str:
    e = html.escape
    details = [f"<p>{e(r.gate_reason)}</p>"]
    if r.vetting_error:
        details.append(f"<p>{e(r.vetting_error)}</p>")
    if r.blocks:
        details.append(f"<p>blocks: {e(', '.join(r.blocks))}</p>")
    for a in r.advisories:
        fixed = ", ".join(a.fixed) or "no fixed version"
        details.append(f"<p>advisory {e(a.id)} ({e(a.severity)}): fixed in {e(fixed)}</p>")
    for d in r.decisions:
        details.append(f"<p>{e(d.decision)} by {e(d.who)} at {e(d.when)}: {e(d.reason)}</p>")
    evidence = "\n".join(
        f"{ev.file}:{ev.start_line}-{ev.end_line} {ev.spdx} score={ev.score} rule={ev.rule} {ev.note}" for ev in r.evidence
    )
    details.append(f"<details><summary>evidence ({len(r.evidence)})</summary><pre>{e(evidence)}</pre></details>")
    return (
        f"<tr class='{e(r.gate)}' data-channel='{e(r.channel)}' data-category='{e(r.category)}' data-status='{e(r.gate)}'>"
        f"<td>{e(r.channel)}</td><td>{e(r.name)}</td><td>{e(r.version)}</td><td>{e(r.gate)}</td><td>{e(r.category)}</td>"
        f"<td>{e(r.concluded or '')}</td><td>{e(r.declared or r.declared_raw)}</td><td>{e(r.detected or '')}</td>"
        f"<td>{''.join(details)}</td></tr>"
    )


# --- SPDX ---------------------------------------------------------------------

def spdx_document(session: Session, namespace_base: str = "http://127.0.0.1/reservoir/spdx") -> Any:
    """An SPDX 2.3 document with one package per release (concluded and declared licenses)."""
    from spdx_tools.spdx.model import (
        Actor, ActorType, Checksum, ChecksumAlgorithm, CreationInfo, Document, ExtractedLicensingInfo, Package,
        Relationship, RelationshipType, SpdxNoAssertion,
    )

    from license_expression import ExpressionError

    from licenses.declared import licensing

    rows = report_rows(session)
    creation = CreationInfo(
        spdx_version="SPDX-2.3", spdx_id="SPDXRef-DOCUMENT", name="reservoir-licenses",
        document_namespace=f"{namespace_base}/{uuid.uuid4()}",
        creators=[Actor(ActorType.TOOL, "reservoir-licenses")], created=datetime.now(timezone.utc).replace(microsecond=0),
    )
    packages = []
    refs: set[str] = set()
    for index, r in enumerate(rows):
        def expression(value: str | None) -> Any:
            if not value:
                return SpdxNoAssertion()
            try:
                parsed = licensing().parse(value)
            except ExpressionError:
                # A bundle's vetting says what it says; what is not SPDX is no assertion.
                return SpdxNoAssertion()
            refs.update(i for i in license_ids(value) if i.startswith("LicenseRef-"))
            return parsed

        packages.append(Package(
            spdx_id=f"SPDXRef-Package-{index}", name=r.name, version=r.version,
            download_location=SpdxNoAssertion(), files_analyzed=False,
            license_concluded=expression(r.concluded), license_declared=expression(r.declared),
            checksums=[Checksum(ChecksumAlgorithm.SHA256, digest) for digest in r.sha256[:1]],
            comment=f"channel {r.channel}; gate {r.gate}: {r.gate_reason}",
        ))
    extracted = [
        ExtractedLicensingInfo(license_id=ref, extracted_text=f"See the ScanCode LicenseDB entry for {ref}.", license_name=ref)
        for ref in sorted(refs)
    ]
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, p.spdx_id) for p in packages]
    return Document(creation, packages=packages, relationships=relationships, extracted_licensing_info=extracted)


def render_spdx(session: Session) -> str:
    from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

    out = io.StringIO()
    write_document_to_stream(spdx_document(session), out, validate=True)
    return out.getvalue() + "\n"


def render(session: Session, fmt: str) -> str:
    renderers = {"html": render_html, "json": render_json, "csv": render_csv, "spdx": render_spdx}
    return renderers[fmt](session)
