"""Admin reviews of held releases, and what each held release blocks."""

from __future__ import annotations

import getpass
from collections import defaultdict
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from sqlalchemy import select
from sqlalchemy.orm import Session

from licenses.models import LicenseDecision
from reservoir.errors import ReservoirError
from reservoir.models import Channel, Gate, Release, ReleaseState, utcnow


@dataclass(frozen=True)
class ReviewResult:
    channel: str
    name: str
    version: str
    gate: Gate


def default_reviewer() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def find_release(session: Session, name: str, version: str, channel: str | None) -> Release:
    query = select(Release).join(Channel).where(Release.name == canonicalize_name(name), Release.version == version)
    if channel:
        query = query.where(Channel.name == channel)
    found = list(session.scalars(query))
    if not found:
        where = f" in channel {channel}" if channel else ""
        raise ReservoirError(f"{name} {version}: no such release{where}", hint="see `reservoir licenses report`")
    if len(found) > 1:
        channels = ", ".join(sorted(r.channel.name for r in found))
        raise ReservoirError(f"{name} {version} is in several channels ({channels})", hint="pass --channel NAME")
    return found[0]


def record_review(
    session: Session, name: str, version: str, *, approve: bool, reason: str, who: str, channel: str | None = None
) -> ReviewResult:
    """Record an admin's decision (who, when, why) in the table and in meta["vetting"], and flip the gate."""
    if not reason.strip():
        raise ReservoirError("a review needs a reason", hint="pass --reason TEXT")
    release = find_release(session, name, version, channel)
    if release.gate is Gate.QUARANTINED:
        raise ReservoirError(
            f"{release.name} {release.version} is quarantined by a security advisory ({release.gate_reason})",
            hint="a license review cannot release it; import a withdrawn or fixed advisory",
        )
    decision = "approve" if approve else "reject"
    when = utcnow()
    session.add(LicenseDecision(release_id=release.id, who=who, decided_at=when, decision=decision, reason=reason))
    vetting = dict((release.meta or {}).get("vetting") or {})
    vetting["decisions"] = [*vetting.get("decisions", []), {
        "who": who, "when": when.isoformat(), "decision": decision, "reason": reason,
    }]
    release.meta = {**(release.meta or {}), "vetting": vetting}
    release.gate = Gate.ALLOWED if approve else Gate.DENIED
    release.gate_reason = f"{decision}d by {who}: {reason}"
    return ReviewResult(release.channel.name, release.name, release.version, release.gate)


def dependency_names(requires_dist: list[str]) -> set[str]:
    """The projects a release always needs (extras' dependencies are optional, so they do not count)."""
    names = set()
    for line in requires_dist:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        names.add(canonicalize_name(requirement.name))
    return names


def blocked_by(releases: list[Release]) -> dict[int, list[str]]:
    """For each held release id: the `name==version` of releases in its channel that need it, transitively."""
    by_channel: dict[int, list[Release]] = defaultdict(list)
    for release in releases:
        if release.state is ReleaseState.ACTIVE:
            by_channel[release.channel_id].append(release)
    blocks: dict[int, list[str]] = {}
    for channel_releases in by_channel.values():
        dependents: dict[str, set[Release]] = defaultdict(set)
        for release in channel_releases:
            for dep in dependency_names((release.meta or {}).get("requires_dist") or []):
                dependents[dep].add(release)
        for held in (r for r in channel_releases if r.gate is Gate.HELD):
            blocks[held.id] = sorted(f"{r.name}=={r.version}" for r in _closure(held.name, dependents) if r.id != held.id)
    return blocks


def _closure(name: str, dependents: dict[str, set[Release]]) -> set[Release]:
    found: set[Release] = set()
    todo = [name]
    seen = {name}
    while todo:
        for release in dependents.get(todo.pop(), set()):
            found.add(release)
            if release.name not in seen:
                seen.add(release.name)
                todo.append(release.name)
    return found
