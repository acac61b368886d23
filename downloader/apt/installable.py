"""Which packages of a published APT set apt could not install from that set alone.

The site's publisher calls `find_uninstallable` through the entry point
``reservoir.installability`` (``apt``), so the site never imports the hub's
adapter yet judges dependencies with the same relation rules the closure
uses (`closure.Universe`: versions, Provides, Multi-Arch, alternatives).

A package is uninstallable when one of its `Pre-Depends` or `Depends`
groups has no alternative that the set satisfies; with `hold`, such a
package is taken out of the set and its dependents are judged again, until
nothing changes, so that what is served installs.

A republish need not judge the whole set again: given the verdicts of the
last call and the packages that entered or left the set since, only the new
packages and those whose dependencies name a changed package (or a name it
provides) are judged, each against the part of the set its dependencies
name. Without `hold` only: a package held back changes what its dependents
see, so `hold` judges the whole set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from downloader.apt.closure import Universe
from downloader.apt.packages import PackageRecord
from downloader.apt.relations import RelationError, parse_relations

Key = tuple[str, str, str]  # name, version, architecture
Entry = tuple[str, str, Mapping[str, Any]]  # name, version, release meta
# The package names a relation field mentions: the first word of each alternative. Reading more
# (a word of an architecture list) only judges a package more than needed, never less.
_NAMES_RE = re.compile(r"(?:^|[,|])\s*([A-Za-z0-9][A-Za-z0-9+.\-]*)")


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


def _key(entry: Entry) -> Key:
    return (entry[0], entry[1], str(entry[2].get("architecture") or ""))


def _wants(meta: Mapping[str, Any]) -> set[str]:
    return set(_NAMES_RE.findall(f"{meta.get('pre_depends') or ''},{meta.get('depends') or ''}"))


def _offers(name: str, meta: Mapping[str, Any]) -> set[str]:
    return {name, *_NAMES_RE.findall(str(meta.get("provides") or ""))}


def _judge_changed(packages: Sequence[Entry], arch: str, where: str, check: set[Key] | None,
                   previous: Mapping[Key, str], changed: Iterable[Entry]) -> dict[Key, str]:
    touched: set[str] = set()
    for name, _, meta in changed:
        touched |= _offers(name, meta)
    judge: list[Entry] = []
    found: dict[Key, str] = {}
    for entry in packages:
        key = _key(entry)
        if check is not None and key not in check:
            continue
        if key not in previous or not touched.isdisjoint(_wants(entry[2])):
            judge.append(entry)
        elif previous[key]:
            found[key] = previous[key]
    if not judge:
        return found
    needed: set[str] = set()
    for _, _, meta in judge:
        needed |= _wants(meta)
    part = [e for e in packages if not needed.isdisjoint(_offers(e[0], e[2]))]
    universe = Universe.build([[_record(meta, name, version) for name, version, meta in part]], arch, where)
    for name, version, meta in judge:
        problem = _problem(universe, _record(meta, name, version))
        if problem is not None:
            found[_key((name, version, meta))] = problem
    return found


def find_uninstallable(packages: Sequence[Entry], arch: str, where: str, check: Sequence[Key] | None = None,
                       hold: bool = False, previous: Mapping[Key, str] | None = None,
                       changed: Iterable[Entry] | None = None) -> dict[Key, str]:
    """(name, version, release meta) of a channel's published set -> {key: why} for those apt could not install.

    Only the keys in `check` are judged (all when None); the whole set satisfies them.
    With `hold`, a judged package that fails leaves the set and the others are judged again.
    `previous` (key -> why, "" when fine, for every key an earlier call judged) and `changed`
    (the entries that entered or left the set since) judge only what the change can affect.
    """
    if previous is not None and changed is not None and not hold:
        return _judge_changed(packages, arch, where, set(check) if check is not None else None, previous, changed)
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
