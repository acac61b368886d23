"""Which packages of a published APT set apt could not install from that set alone.

The site's publisher calls `find_uninstallable` through the entry point
``reservoir.installability`` (``apt``), so the site never imports the hub's
adapter yet judges dependencies with the same relation rules the closure
uses (`closure.Universe`: versions, Provides, Multi-Arch, alternatives).

A package is uninstallable when one of its `Pre-Depends` or `Depends`
groups has no alternative that the set satisfies; with `hold`, such a
package is taken out of the set and its dependents are judged again, until
nothing changes, so that what is served installs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from downloader.apt.closure import Universe
from downloader.apt.packages import PackageRecord
from downloader.apt.relations import RelationError, parse_relations

Key = tuple[str, str, str]  # name, version, architecture


def _record(meta: Mapping[str, Any], name: str, version: str) -> PackageRecord:
    return PackageRecord(
        name, version, str(meta.get("architecture") or ""), "", 0, "", str(meta.get("multi_arch") or "no"),
        str(meta.get("depends") or ""), str(meta.get("pre_depends") or ""), str(meta.get("recommends") or ""),
        str(meta.get("provides") or ""), bool(meta.get("essential")), str(meta.get("priority") or ""),
        str(meta.get("section") or ""), str(meta.get("source") or ""), "", str(meta.get("suite") or ""),
        str(meta.get("component") or ""),
    )


def _problem(universe: Universe, record: PackageRecord) -> str | None:
    for text in (record.pre_depends, record.depends):
        if not text:
            continue
        try:
            groups = parse_relations(text)
        except RelationError as exc:
            return f"unreadable dependency field: {exc}"
        for group in groups:
            usable = [alt for alt in group if alt.applies_on(universe.arch)]
            if usable and not any(universe.real(alt) or universe.providers(alt) for alt in usable):
                missing = usable[0] if len(usable) == 1 else None
                text_of = " | ".join(str(a) for a in usable)
                reason = universe.describe_missing(missing) if missing is not None else "none of them published"
                return f"{record.name} {record.version} -> {text_of} -> {reason}"
    return None


def find_uninstallable(packages: Sequence[tuple[str, str, Mapping[str, Any]]], arch: str, where: str,
                       check: Sequence[Key] | None = None, hold: bool = False) -> dict[Key, str]:
    """(name, version, release meta) of a channel's published set -> {key: why} for those apt could not install.

    Only the keys in `check` are judged (all when None); the whole set satisfies them.
    With `hold`, a judged package that fails leaves the set and the others are judged again.
    """
    records = [_record(meta, name, version) for name, version, meta in packages]
    wanted = set(check) if check is not None else None
    found: dict[Key, str] = {}
    while True:
        universe = Universe.build([[r for r in records if r.key not in found]], arch, where)
        new = {}
        for record in universe.records():
            if record.key in found or (wanted is not None and record.key not in wanted):
                continue
            problem = _problem(universe, record)
            if problem is not None:
                new[record.key] = problem
        found.update(new)
        if not new or not hold:
            return found
