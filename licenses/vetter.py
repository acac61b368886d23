"""The `reservoir.vetters` entry point for licenses: verdict, policy, gate.

The hub's sync calls `vet(app, release_ids)` on releases it just fetched;
`revet` re-evaluates releases already in the store (after a policy change).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from downloader.base import Ecosystem, find_ecosystem
from licenses.files import LicenseFile, license_files, write_for_scan
from licenses.policy import Decision, Policy, load_policy
from licenses.scan import ScanWorker, scan_files, scancode_version, worker_from_env
from licenses.declared import Declared
from licenses.verdict import Verdict, build_verdict, declaration, detected_expression, needs_scan
from reservoir.blobs import BlobStore
from reservoir.context import AppContext
from reservoir.models import ArtifactState, Gate, Release
from reservoir.progress import Progress

log = logging.getLogger(__name__)

GATE_OF_DECISION = {Decision.ALLOW: Gate.ALLOWED, Decision.REVIEW: Gate.HELD, Decision.DENY: Gate.DENIED}


@dataclass
class Vetting:
    """One vetting pass: the blob store, the policy and a scancode worker started only if needed."""

    blobs: BlobStore
    policy: Policy
    scratch: Path
    worker: ScanWorker = field(default_factory=worker_from_env)
    _version: str = field(default="", init=False)

    @property
    def scanner_version(self) -> str:
        if not self._version:
            self._version = scancode_version()
        return self._version

    def release_files(self, release: Release) -> list[LicenseFile]:
        eco = _ecosystem_of(release)
        found: list[LicenseFile] = []
        for artifact in release.artifacts:
            if artifact.state is not ArtifactState.STORED or not self.blobs.has(artifact.sha256):
                continue  # only files whose upstream hash was verified are vetted
            with self.blobs.open(artifact.sha256) as stream:
                found.extend(eco.license_files(artifact.filename, stream) if eco else
                             license_files(artifact.filename, stream))
        return found

    def verdict(self, session: Session, release: Release) -> Verdict:
        files = self.release_files(release)
        declared = _declaration(release, files)
        to_scan = needs_scan(declared, files)
        results: dict[str, dict[str, Any]] = {}
        if to_scan:
            with tempfile.TemporaryDirectory(dir=self.scratch, prefix="license-scan-") as tmp:
                paths = write_for_scan(to_scan, Path(tmp))
                results = scan_files(session, self.worker, paths, self.scanner_version)
        detected, evidence = detected_expression(to_scan, results)
        return build_verdict(declared, detected, evidence)


def _ecosystem_of(release: Release) -> Ecosystem | None:
    """The release's ecosystem hooks (its archive format, its declared license); None: the generic readers."""
    return find_ecosystem(release.channel.kind) if release.channel is not None else None


def _declaration(release: Release, files: list[LicenseFile]) -> Declared | None:
    eco = _ecosystem_of(release)
    if eco is None:
        return declaration(release.meta or {}, files)
    found: Declared | None = eco.declaration(release.meta or {}, files)
    return found


def apply_verdict(release: Release, verdict: Verdict, policy: Policy) -> None:
    """Write the verdict into meta["vetting"] and set the gate (an admin's decision and a quarantine stand)."""
    vetting = dict((release.meta or {}).get("vetting") or {})
    vetting.update(verdict.as_meta())
    outcome = policy.decide(release.name, release.version, verdict.concluded, verdict.category)
    vetting["policy"] = {"decision": outcome.decision.value, "reason": outcome.reason}
    decisions = vetting.setdefault("decisions", [])
    vetting.setdefault("advisories", [])
    # A new dict, so SQLAlchemy sees the JSON column change.
    release.meta = {**(release.meta or {}), "vetting": vetting}
    if release.gate is Gate.QUARANTINED:
        return
    if decisions:
        last = decisions[-1]
        release.gate = Gate.ALLOWED if last["decision"] == "approve" else Gate.DENIED
        release.gate_reason = f"{last['decision']}d by {last['who']}: {last['reason']}"
        return
    release.gate = GATE_OF_DECISION[outcome.decision]
    release.gate_reason = f"license {outcome.reason}"


def vet(app: AppContext, release_ids: list[int]) -> None:
    """Vet the licenses of the given releases (the `reservoir.vetters` entry point)."""
    if not release_ids:
        return
    worker = worker_from_env()
    try:
        vet_releases(app, release_ids, worker)
    finally:
        worker.stop()


def vet_releases(app: AppContext, release_ids: list[int], worker: ScanWorker) -> None:
    """Vet with a given scancode worker (a caller vetting often keeps one worker alive)."""
    vetting = Vetting(app.blobs, load_policy(app.home.section("licenses")), app.home.tmp_dir, worker)
    app.home.tmp_dir.mkdir(parents=True, exist_ok=True)
    with Progress("vetting licenses", total=len(release_ids), unit="release") as progress:
        for start in range(0, len(release_ids), 50):
            # Small transactions: a long vetting run does not hold the database.
            with app.db.transaction() as session:
                for release in load_releases(session, release_ids[start:start + 50]):
                    apply_verdict(release, vetting.verdict(session, release), vetting.policy)
                    progress.update()
    log.info("vetted %d releases (%d files scanned)", len(release_ids), worker.scanned)


def load_releases(session: Session, ids: list[int]) -> list[Release]:
    query = (select(Release).where(Release.id.in_(ids))
             .options(selectinload(Release.artifacts), selectinload(Release.channel)).order_by(Release.id))
    return list(session.scalars(query))


def revet_all(app: AppContext) -> int:
    """Re-vet every release in the store (after the policy changed); returns how many."""
    with app.db.transaction() as session:
        ids = list(session.scalars(select(Release.id).order_by(Release.id)))
    vet(app, ids)
    return len(ids)


def license_gate(release: Release) -> tuple[Gate, str]:
    """The gate licenses alone give (used when a quarantine is lifted): an admin's decision, else the policy's."""
    vetting = (release.meta or {}).get("vetting") or {}
    decisions = vetting.get("decisions") or []
    if decisions:
        last = decisions[-1]
        gate = Gate.ALLOWED if last["decision"] == "approve" else Gate.DENIED
        return gate, f"{last['decision']}d by {last['who']}: {last['reason']}"
    policy = vetting.get("policy")
    if not policy:
        return Gate.HELD, "license not vetted yet"
    return GATE_OF_DECISION[Decision(policy["decision"])], f"license {policy['reason']}"
