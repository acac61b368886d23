"""License categories from ScanCode's LicenseDB (shipped with license-expression).

An expression's category: for AND every license applies, so the most
restrictive wins; for OR the user may choose, so the least restrictive wins.
"""

from __future__ import annotations

import enum
import json
from functools import lru_cache
from importlib.resources import files

from license_expression import AND, OR, ExpressionError, LicenseSymbol, LicenseWithExceptionSymbol

from licenses.declared import licensing


class Category(str, enum.Enum):
    # In order of increasing restriction; the order is what AND/OR combine on.
    PERMISSIVE = "permissive"
    WEAK_COPYLEFT = "weak-copyleft"
    COPYLEFT = "copyleft"
    NETWORK_COPYLEFT = "network-copyleft"
    UNKNOWN = "unknown"
    PROPRIETARY = "proprietary"

    @property
    def rank(self) -> int:
        return list(Category).index(self)


# Copyleft that reaches users over a network, which LicenseDB files as plain "Copyleft".
NETWORK_COPYLEFT_IDS = frozenset({
    "AGPL-1.0", "AGPL-1.0-only", "AGPL-1.0-or-later", "AGPL-3.0", "AGPL-3.0-only", "AGPL-3.0-or-later",
    "SSPL-1.0", "RPL-1.1", "RPL-1.5", "OSL-3.0", "CPAL-1.0",
})

LICENSEDB_CATEGORIES: dict[str, Category] = {
    "Permissive": Category.PERMISSIVE,
    "Public Domain": Category.PERMISSIVE,
    "Copyleft Limited": Category.WEAK_COPYLEFT,
    "Copyleft": Category.COPYLEFT,
    "Proprietary Free": Category.PROPRIETARY,
    "Commercial": Category.PROPRIETARY,
    "Source-available": Category.PROPRIETARY,
    "Free Restricted": Category.PROPRIETARY,
}


@lru_cache(maxsize=1)
def licensedb_index() -> dict[str, str]:
    """SPDX id (and scancode key, as LicenseRef-scancode-KEY) -> LicenseDB category name."""
    entries = json.loads(files("license_expression").joinpath("data/scancode-licensedb-index.json").read_text())
    index: dict[str, str] = {}
    for entry in entries:
        category = entry.get("category") or ""
        index[f"LicenseRef-scancode-{entry['license_key']}".lower()] = category
        for spdx in [entry.get("spdx_license_key") or "", *(entry.get("other_spdx_license_keys") or [])]:
            if spdx:
                index.setdefault(spdx.lower(), category)
    return index


def category_of_id(spdx_id: str) -> Category:
    if spdx_id in NETWORK_COPYLEFT_IDS:
        return Category.NETWORK_COPYLEFT
    return LICENSEDB_CATEGORIES.get(licensedb_index().get(spdx_id.lower(), ""), Category.UNKNOWN)


def category_of(expression: str | None) -> Category:
    """The category of an SPDX expression; unknown for none or an unparsable one."""
    if not expression:
        return Category.UNKNOWN
    try:
        parsed = licensing().parse(expression, validate=False, simple=False)
    except ExpressionError:
        return Category.UNKNOWN
    return _category_of_node(parsed)


def _category_of_node(node: object) -> Category:
    if isinstance(node, LicenseWithExceptionSymbol):
        # An exception loosens the base license (Classpath, LLVM): a GPL with one behaves as weak copyleft.
        base = category_of_id(node.license_symbol.key)
        return Category.WEAK_COPYLEFT if base is Category.COPYLEFT else base
    if isinstance(node, LicenseSymbol):
        return category_of_id(node.key)
    children = [_category_of_node(arg) for arg in node.args]  # type: ignore[attr-defined]
    if isinstance(node, AND):
        return max(children, key=lambda c: c.rank)
    if isinstance(node, OR):
        return min(children, key=lambda c: c.rank)
    return Category.UNKNOWN



