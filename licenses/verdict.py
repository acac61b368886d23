"""A release's license verdict: declared, detected and concluded SPDX expressions, category, evidence."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from licenses.categories import Category, category_of
from licenses.declared import (
    Declared, declared_debian_copyright, declared_from_metadata, join_and, license_ids, spdx_expression,
)
from licenses.files import LicenseFile

# Scancode's "there is a license reference here, but I cannot tell which" keys: noise, unless alone.
VAGUE_IDS = frozenset({
    "LicenseRef-scancode-unknown-license-reference", "LicenseRef-scancode-unknown",
    "LicenseRef-scancode-free-unknown", "LicenseRef-scancode-generic-cla",
    "LicenseRef-scancode-warranty-disclaimer",
})


@dataclass
class Evidence:
    file: str
    sha256: str
    spdx: str | None
    start_line: int | None = None
    end_line: int | None = None
    score: float | None = None
    rule: str | None = None
    note: str = ""


@dataclass
class Verdict:
    declared: str | None  # SPDX (None: nothing declared, or not SPDX)
    declared_raw: str
    detected: str | None
    concluded: str | None
    category: Category
    evidence: list[Evidence] = field(default_factory=list)
    disagreement: bool = False

    def as_meta(self) -> dict[str, Any]:
        return {
            "declared": self.declared,
            "declared_raw": self.declared_raw,
            "detected": self.detected,
            "concluded": self.concluded,
            "category": self.category.value,
            "evidence": [asdict(e) for e in self.evidence],
            "disagreement": self.disagreement,
        }


def declaration(meta: dict[str, Any], files: list[LicenseFile]) -> Declared | None:
    """The release's declared license: the catalog's PyPI fields, else its metadata / copyright file."""
    from licenses.declared import declared_pypi

    found = declared_pypi(meta.get("license_expression"), meta.get("license"), meta.get("classifiers") or [])
    if found is not None:
        return found
    for item in files:
        if item.member.endswith("debian/copyright"):
            found = declared_debian_copyright(item.text())
        elif item.is_metadata:
            found = declared_from_metadata(item.text())
        if found is not None:
            return found
    return None


def needs_scan(declared: Declared | None, files: list[LicenseFile]) -> list[LicenseFile]:
    """The files to scan: license files always (a declaration may disagree with them); metadata only when
    nothing SPDX is declared and no license file exists."""
    license_texts = [f for f in files if not f.is_metadata]
    if license_texts:
        return license_texts
    if declared is None or declared.spdx is None:
        return [f for f in files if f.is_metadata]
    return []


def detected_expression(files: list[LicenseFile], results: dict[str, dict[str, Any]]) -> tuple[str | None, list[Evidence]]:
    expressions: list[str] = []
    evidence: list[Evidence] = []
    seen: set[str] = set()
    for item in files:
        result = results.get(item.sha256) or {}
        if item.sha256 in seen:
            continue
        seen.add(item.sha256)
        if result.get("timeout") or result.get("error"):
            note = "scan timed out" if result.get("timeout") else f"scan failed: {result['error']}"
            evidence.append(Evidence(item.member, item.sha256, None, note=note))
            continue
        expression = result.get("expression")
        if expression:
            expressions.append(expression)
        for match in result.get("matches") or []:
            evidence.append(Evidence(
                item.member, item.sha256, match.get("spdx"), match.get("start_line"), match.get("end_line"),
                match.get("score"), match.get("rule"),
            ))
    return _without_vague(join_and(expressions)), evidence


def _without_vague(expression: str | None) -> str | None:
    if not expression:
        return None
    ids = license_ids(expression)
    concrete = [i for i in ids if i not in VAGUE_IDS]
    if not concrete:
        return expression
    if len(concrete) == len(ids):
        return spdx_expression(expression) or expression
    # Rebuild from the concrete terms only: a vague reference next to a real license adds nothing.
    return join_and(_top_level_terms(expression)) or expression


def _top_level_terms(expression: str) -> list[str]:
    from licenses.declared import licensing
    from license_expression import AND

    parsed = licensing().parse(expression, validate=False, simple=False)
    terms = list(parsed.args) if isinstance(parsed, AND) else [parsed]
    kept = []
    for term in terms:
        rendered = str(term)
        if not all(i in VAGUE_IDS for i in license_ids(rendered)):
            kept.append(rendered)
    return kept


def conclude(declared: Declared | None, detected: str | None) -> tuple[str | None, bool]:
    """The concluded expression and whether declaration and files disagree.

    An SPDX declaration stands when the files name no license it lacks; when
    they do, both apply (the stricter reading), and the disagreement is flagged."""
    declared_spdx = declared.spdx if declared else None
    if declared_spdx is None:
        return detected, False
    if detected is None:
        return declared_spdx, False
    declared_ids = set(license_ids(declared_spdx))
    extra = [i for i in license_ids(detected) if i not in declared_ids and i not in VAGUE_IDS]
    if not extra:
        return declared_spdx, False
    return join_and([declared_spdx, detected]), True


def build_verdict(declared: Declared | None, detected: str | None, evidence: list[Evidence]) -> Verdict:
    concluded, disagreement = conclude(declared, detected)
    return Verdict(
        declared=declared.spdx if declared else None,
        declared_raw=declared.raw if declared else "",
        detected=detected,
        concluded=concluded,
        category=category_of(concluded),
        evidence=evidence,
        disagreement=disagreement,
    )
