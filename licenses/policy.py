"""License policy from reservoir.toml: allow, review or deny per category, per SPDX id, per package.

    [licenses.categories]
    copyleft = "review"
    [licenses.ids]
    "LGPL-3.0-only" = "allow"
    [[licenses.exceptions]]
    name = "foo"
    version = "*"
    decision = "allow"
    reason = "legal approved 2026-01"
"""

from __future__ import annotations

import enum
import fnmatch
from dataclasses import dataclass, field
from typing import Any

from license_expression import AND, OR, ExpressionError, LicenseSymbol, LicenseWithExceptionSymbol

from licenses.categories import Category, category_of_id
from licenses.declared import licensing
from reservoir.errors import ConfigError


class Decision(str, enum.Enum):
    # Ordered from most to least permissive; AND takes the strictest, OR the most lenient.
    ALLOW = "allow"
    REVIEW = "review"
    DENY = "deny"

    @property
    def rank(self) -> int:
        return list(Decision).index(self)


DEFAULT_CATEGORIES: dict[Category, Decision] = {
    Category.PERMISSIVE: Decision.ALLOW,
    Category.WEAK_COPYLEFT: Decision.ALLOW,
    Category.COPYLEFT: Decision.REVIEW,
    Category.NETWORK_COPYLEFT: Decision.REVIEW,
    Category.PROPRIETARY: Decision.DENY,
    Category.UNKNOWN: Decision.REVIEW,
}


@dataclass(frozen=True)
class PackageException:
    name: str
    version: str  # an fnmatch pattern; "*" for every version
    decision: Decision
    reason: str


@dataclass(frozen=True)
class PolicyOutcome:
    decision: Decision
    reason: str


@dataclass
class Policy:
    categories: dict[Category, Decision] = field(default_factory=lambda: dict(DEFAULT_CATEGORIES))
    ids: dict[str, Decision] = field(default_factory=dict)
    exceptions: list[PackageException] = field(default_factory=list)

    def decide(self, name: str, version: str, concluded: str | None, category: Category) -> PolicyOutcome:
        for exception in self.exceptions:
            if exception.name == name and fnmatch.fnmatchcase(version, exception.version):
                return PolicyOutcome(exception.decision, f"package exception: {exception.reason}")
        if not concluded:
            decision = self.categories[Category.UNKNOWN]
            return PolicyOutcome(decision, f"no license found: {decision.value} (category unknown)")
        try:
            parsed = licensing().parse(concluded, validate=False, simple=False)
        except ExpressionError:
            decision = self.categories[Category.UNKNOWN]
            return PolicyOutcome(decision, f"{concluded}: unreadable expression, {decision.value}")
        decision = self._decide_node(parsed)
        return PolicyOutcome(decision, f"{concluded} ({category.value}): {decision.value}")

    def _decide_node(self, node: object) -> Decision:
        if isinstance(node, LicenseWithExceptionSymbol):
            key = node.license_symbol.key
            if key in self.ids:
                return self.ids[key]
            base = category_of_id(key)
            return self.categories[Category.WEAK_COPYLEFT if base is Category.COPYLEFT else base]
        if isinstance(node, LicenseSymbol):
            return self.ids.get(node.key) or self.categories[category_of_id(node.key)]
        children = [self._decide_node(arg) for arg in node.args]  # type: ignore[attr-defined]
        if isinstance(node, OR):
            return min(children, key=lambda d: d.rank)
        if isinstance(node, AND):
            return max(children, key=lambda d: d.rank)
        return self.categories[Category.UNKNOWN]


def _decision(value: Any, where: str) -> Decision:
    try:
        return Decision(value)
    except ValueError:
        raise ConfigError(
            f"reservoir.toml [{where}]: {value!r} is not a decision", hint="use allow, review or deny"
        ) from None


def load_policy(section: dict[str, Any]) -> Policy:
    """The [licenses] table of reservoir.toml; defaults for what it leaves out."""
    policy = Policy()
    for name, value in (section.get("categories") or {}).items():
        try:
            category = Category(name)
        except ValueError:
            known = ", ".join(c.value for c in Category)
            raise ConfigError(f"reservoir.toml [licenses.categories]: unknown category {name!r}", hint=f"one of {known}") from None
        policy.categories[category] = _decision(value, f"licenses.categories.{name}")
    for spdx_id, value in (section.get("ids") or {}).items():
        policy.ids[str(spdx_id)] = _decision(value, f"licenses.ids.{spdx_id}")
    for entry in section.get("exceptions") or []:
        if not isinstance(entry, dict) or "name" not in entry or "decision" not in entry:
            raise ConfigError("reservoir.toml [[licenses.exceptions]]: each needs name and decision", hint="see docs/licenses.md")
        policy.exceptions.append(PackageException(
            name=str(entry["name"]).lower().replace("_", "-").replace(".", "-"),
            version=str(entry.get("version", "*")),
            decision=_decision(entry["decision"], "licenses.exceptions"),
            reason=str(entry.get("reason", "")),
        ))
    return policy
