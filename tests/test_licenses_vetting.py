"""License vetting of real wheels with real license texts, scanned by real scancode.

The fixture wheels are built by setuptools; their license files are the full
texts ScanCode ships in its LicenseDB (MIT, Apache-2.0, GPL-3.0, AGPL-3.0, a
proprietary EULA) with the YAML header stripped, so they are exactly what a
real project would carry.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from licenses.models import LicenseDecision, LicenseScan
from licenses.scan import ScanWorker, scan_files, scancode_version
from licenses.vetter import vet, vet_releases
from reservoir.cli import cli
from reservoir.context import AppContext
from reservoir.db import Database
from reservoir.home import create_home
from reservoir.models import Channel, Gate, Release
from tests.support.site import add_file

LICENSE_DATA = Path(__import__("licensedcode").__file__).parent / "data" / "licenses"


def license_text(key: str) -> str:
    """A full license text from ScanCode's LicenseDB, without its YAML front matter."""
    text = (LICENSE_DATA / f"{key}.LICENSE").read_text()
    if text.startswith("---"):
        text = text.split("\n---\n", 1)[1]
    return text.lstrip("\n")


@dataclass(frozen=True)
class LicensedProject:
    name: str
    license_field: str | None  # the `License:` metadata field (None: not declared)
    files: dict[str, str]  # license file name -> LicenseDB key
    dependencies: tuple[str, ...] = ()
    classifiers: tuple[str, ...] = ()


PROJECTS = [
    LicensedProject("lic-mit", "MIT", {"LICENSE": "mit"}),
    LicensedProject("lic-apache", "Apache 2.0", {"LICENSE.txt": "apache-2.0"}),
    LicensedProject("lic-gpl", "GPL-3.0-only", {"COPYING": "gpl-3.0"}),
    LicensedProject("lic-agpl", None, {"LICENSE": "agpl-3.0"}),
    LicensedProject("lic-eula", "Proprietary", {"LICENSE": "altova-eula"}),
    LicensedProject("lic-none", None, {}),
    # Declares MIT but ships the GPL: the files win the argument.
    LicensedProject("lic-liar", "MIT", {"COPYING": "gpl-3.0"}),
    # Permissive itself, but needs a held package.
    LicensedProject("lic-app", "MIT", {"LICENSE": "mit"}, dependencies=("lic-gpl",)),
]


def build_licensed_wheel(project: LicensedProject, out: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="reservoir-licwheel-") as tmp:
        src = Path(tmp) / project.name
        module = project.name.replace("-", "_")
        (src / module).mkdir(parents=True)
        (src / module / "__init__.py").write_text("")
        for filename, key in project.files.items():
            (src / filename).write_text(license_text(key))
        lines = ["[build-system]", 'requires = ["setuptools"]', 'build-backend = "setuptools.build_meta"', "",
                 "[project]", f'name = "{project.name}"', 'version = "1.0"', f"dependencies = {json.dumps(list(project.dependencies))}"]
        if project.license_field:
            lines.append(f"license = {{text = {json.dumps(project.license_field)}}}")
        lines += ["", "[tool.setuptools]", f'packages = ["{module}"]', f"license-files = {json.dumps(list(project.files))}", ""]
        (src / "pyproject.toml").write_text("\n".join(lines))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                        "-w", str(out), str(src)], check=True, capture_output=True)
    return next(out.glob(f"{project.name.replace('-', '_')}-1.0-*.whl"))


@pytest.fixture(scope="session")
def licensed_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("licensed-wheels")
    return {p.name: build_licensed_wheel(p, out) for p in PROJECTS}


@pytest.fixture(scope="session")
def scan_worker() -> Iterator[ScanWorker]:
    """One scancode worker for the whole session: its index load costs seconds."""
    with ScanWorker(file_timeout_s=120) as worker:
        worker.start()
        yield worker


def make_hub(root: Path, wheels: dict[str, Path], policy: str = "") -> AppContext:
    create_home(root, "hub")
    if policy:
        with (root / "reservoir.toml").open("a") as config:
            config.write(policy)
    app = AppContext(home_root=root)
    with app.db.transaction() as session:
        channel = Channel(name="py", kind="pypi", upstream="http://127.0.0.1:1/simple", options={})
        session.add(channel)
        session.flush()
        for path in wheels.values():
            release = add_file(session, app.blobs, channel, path)
            release.meta = {"requires_dist": _requires_dist(path)}
    return app


def _requires_dist(path: Path) -> list[str]:
    from tests.support.pypi_index import wheel_metadata

    return [line[len("Requires-Dist: "):] for line in wheel_metadata(path).decode().splitlines()
            if line.startswith("Requires-Dist: ")]


def release_ids(app: AppContext) -> list[int]:
    with app.db.transaction() as session:
        return list(session.scalars(select(Release.id)))


def vetting_of(app: AppContext) -> dict[str, tuple[Gate, dict[str, object]]]:
    with app.db.transaction() as session:
        return {r.name: (r.gate, r.meta["vetting"]) for r in session.scalars(select(Release))}


@pytest.fixture(scope="module")
def vetted_hub(tmp_path_factory: pytest.TempPathFactory, licensed_wheels: dict[str, Path],
               scan_worker: ScanWorker) -> Iterator[AppContext]:
    app = make_hub(tmp_path_factory.mktemp("hub") / "home", licensed_wheels)
    vet_releases(app, release_ids(app), scan_worker)
    yield app
    app.close()


@pytest.mark.parametrize(("name", "gate", "concluded", "category"), [
    ("lic-mit", Gate.ALLOWED, "MIT", "permissive"),
    ("lic-apache", Gate.ALLOWED, "Apache-2.0", "permissive"),
    ("lic-gpl", Gate.HELD, "GPL-3.0-only", "copyleft"),
    ("lic-agpl", Gate.HELD, "AGPL-3.0-only", "network-copyleft"),
    ("lic-eula", Gate.DENIED, "LicenseRef-scancode-altova-eula", "proprietary"),
    ("lic-none", Gate.HELD, None, "unknown"),
    ("lic-liar", Gate.HELD, "MIT AND GPL-3.0-only", "copyleft"),
])
def test_verdicts_of_real_license_texts(vetted_hub: AppContext, name: str, gate: Gate, concluded: str | None,
                                        category: str) -> None:
    got_gate, vetting = vetting_of(vetted_hub)[name]
    assert (got_gate, vetting["concluded"], vetting["category"]) == (gate, concluded, category)


def test_verdict_records_declared_detected_and_evidence(vetted_hub: AppContext) -> None:
    verdicts = vetting_of(vetted_hub)
    _, apache = verdicts["lic-apache"]
    assert apache["declared"] == "Apache-2.0" and apache["declared_raw"] == "Apache 2.0"
    assert apache["detected"] == "Apache-2.0"
    evidence = apache["evidence"]
    assert isinstance(evidence, list) and evidence
    assert evidence[0]["file"].endswith("LICENSE.txt") and evidence[0]["rule"] and evidence[0]["score"] > 90
    _, liar = verdicts["lic-liar"]
    assert liar["disagreement"] is True and liar["declared"] == "MIT" and liar["detected"] == "GPL-3.0-only"
    _, eula = verdicts["lic-eula"]
    assert eula["declared"] is None and eula["declared_raw"] == "Proprietary"


def test_no_file_is_scanned_twice(tmp_path: Path, licensed_wheels: dict[str, Path], scan_worker: ScanWorker) -> None:
    app = make_hub(tmp_path / "hub", licensed_wheels)
    before = scan_worker.scanned
    vet_releases(app, release_ids(app), scan_worker)
    first = scan_worker.scanned - before
    # lic-mit and lic-app carry the same MIT text: one scan for both; lic-none declares nothing and has no
    # license file, so its METADATA is scanned.
    distinct = len({key for p in PROJECTS for key in p.files.values()}) + 1
    assert first == distinct
    vet_releases(app, release_ids(app), scan_worker)
    assert scan_worker.scanned - before == first
    with app.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(LicenseScan)) == distinct
    app.close()


def test_scan_cache_on_both_databases(database: Database, tmp_path: Path, scan_worker: ScanWorker) -> None:
    path = tmp_path / "LICENSE"
    path.write_text(license_text("apache-2.0"))
    digest = "ab" * 32
    with database.transaction() as session:
        first = scan_files(session, scan_worker, {digest: path}, scancode_version())
    path.write_text("changed on disk; the cache is keyed by content hash, so it is not read again")
    with database.transaction() as session:
        second = scan_files(session, scan_worker, {digest: path}, scancode_version())
    assert first[digest]["expression"] == "Apache-2.0" and second == first


def test_held_release_reports_what_it_blocks(vetted_hub: AppContext) -> None:
    result = CliRunner().invoke(cli, ["--home", str(vetted_hub.home_root), "licenses", "report", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)["releases"]}
    assert rows["lic-gpl"]["blocks"] == ["lic-app==1.0"]
    assert rows["lic-mit"]["blocks"] == []


def test_review_approve_and_reject_are_recorded(tmp_path: Path, licensed_wheels: dict[str, Path],
                                                scan_worker: ScanWorker) -> None:
    app = make_hub(tmp_path / "hub", {k: v for k, v in licensed_wheels.items() if k in ("lic-gpl", "lic-none")})
    vet_releases(app, release_ids(app), scan_worker)
    runner = CliRunner()
    home = str(app.home_root)
    approved = runner.invoke(cli, ["--home", home, "licenses", "review", "lic-gpl", "1.0", "--approve",
                                   "--reason", "GPL fine for internal use", "--by", "alice"])
    assert approved.exit_code == 0, approved.output
    rejected = runner.invoke(cli, ["--home", home, "licenses", "review", "lic-none", "1.0", "--reject",
                                   "--reason", "no license, no use"])
    assert rejected.exit_code == 0, rejected.output
    verdicts = vetting_of(app)
    gate, vetting = verdicts["lic-gpl"]
    assert gate is Gate.ALLOWED
    decisions = vetting["decisions"]
    assert isinstance(decisions, list) and decisions[0]["who"] == "alice"
    assert decisions[0]["decision"] == "approve" and decisions[0]["reason"] == "GPL fine for internal use"
    assert verdicts["lic-none"][0] is Gate.DENIED
    # Re-vetting (a policy change) keeps the admin's decisions.
    vet_releases(app, release_ids(app), scan_worker)
    assert vetting_of(app)["lic-gpl"][0] is Gate.ALLOWED
    with app.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(LicenseDecision)) == 2
    app.close()


@pytest.mark.parametrize(("args", "message"), [
    (["lic-nope", "1.0", "--approve", "--reason", "x"], "lic-nope 1.0: no such release"),
    (["lic-gpl", "1.0", "--reason", "x"], "pass --approve or --reject"),
    (["lic-gpl", "1.0", "--approve", "--reason", "  "], "a review needs a reason"),
])
def test_bad_review_is_one_line_error_and_changes_nothing(vetted_hub: AppContext, args: list[str], message: str) -> None:
    before = vetting_of(vetted_hub)
    result = CliRunner().invoke(cli, ["--home", str(vetted_hub.home_root), "licenses", "review", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert vetting_of(vetted_hub) == before


def test_policy_in_reservoir_toml(tmp_path: Path, licensed_wheels: dict[str, Path], scan_worker: ScanWorker) -> None:
    policy = '\n[licenses.ids]\n"GPL-3.0-only" = "allow"\n\n[[licenses.exceptions]]\nname = "lic-eula"\n' \
             'version = "*"\ndecision = "allow"\nreason = "site licence bought"\n'
    wanted = {k: v for k, v in licensed_wheels.items() if k in ("lic-gpl", "lic-eula")}
    app = make_hub(tmp_path / "hub", wanted, policy)
    vet_releases(app, release_ids(app), scan_worker)
    verdicts = vetting_of(app)
    assert verdicts["lic-gpl"][0] is Gate.ALLOWED
    assert verdicts["lic-eula"][0] is Gate.ALLOWED and "site licence bought" in verdicts["lic-eula"][1]["policy"]["reason"]
    app.close()


def test_vetter_entry_point_starts_and_stops_its_own_worker(tmp_path: Path, licensed_wheels: dict[str, Path]) -> None:
    from reservoir.plugins import vetters

    assert vet in vetters()
    app = make_hub(tmp_path / "hub", {"lic-agpl": licensed_wheels["lic-agpl"]})
    vet(app, release_ids(app))
    assert vetting_of(app)["lic-agpl"][0] is Gate.HELD
    app.close()


def test_scan_timeout_is_recorded_and_worker_restarts(tmp_path: Path) -> None:
    path = tmp_path / "LICENSE"
    path.write_text(license_text("mit"))
    # A timeout shorter than any scan: the worker is killed, the file recorded as timed out.
    with ScanWorker(file_timeout_s=0.0001) as worker:
        worker.start()
        assert worker.scan(path) == {"timeout": True, "expression": None, "matches": []}
        worker.file_timeout_s = 120
        assert worker.scan(path)["expression"] == "MIT"


def report(app: AppContext, fmt: str, tmp_path: Path) -> str:
    out = tmp_path / ("report.spdx.json" if fmt == "spdx" else f"report.{fmt}")
    result = CliRunner().invoke(cli, ["--home", str(app.home_root), "licenses", "report", "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out.read_text()


def test_spdx_report_is_a_valid_spdx_document(vetted_hub: AppContext, tmp_path: Path) -> None:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    report(vetted_hub, "spdx", tmp_path)
    document = parse_file(str(tmp_path / "report.spdx.json"))
    assert validate_full_spdx_document(document) == []
    packages = {p.name: p for p in document.packages}
    assert set(packages) == {p.name for p in PROJECTS}
    assert str(packages["lic-liar"].license_concluded) == "MIT AND GPL-3.0-only"
    assert str(packages["lic-apache"].license_declared) == "Apache-2.0"
    assert any(e.license_id == "LicenseRef-scancode-altova-eula" for e in document.extracted_licensing_info)


def test_html_and_csv_reports(vetted_hub: AppContext, tmp_path: Path) -> None:
    page = report(vetted_hub, "html", tmp_path)
    assert "<select data-filter='category'>" in page and "<select data-filter='status'>" in page
    assert "data-status='denied'" in page and "LicenseRef-scancode-altova-eula" in page
    assert "blocks: lic-app==1.0" in page and "<details><summary>evidence" in page
    lines = report(vetted_hub, "csv", tmp_path).splitlines()
    assert lines[0].startswith("channel,name,version,gate,category")
    assert any(line.startswith("py,lic-gpl,1.0,held,copyleft,GPL-3.0-only") for line in lines)


def test_report_renders_from_the_catalog_alone(vetted_hub: AppContext) -> None:
    # What a site has: releases with meta["vetting"] as the bundle carried it, no scan cache.
    from licenses.report import render_html

    with vetted_hub.db.transaction() as session:
        session.query(LicenseScan).delete()
        page = render_html(session)
        session.rollback()
    assert "AGPL-3.0-only" in page


def bundled(app: AppContext, out: Path) -> dict[str, dict[str, object]]:
    """The releases the next bundle carries, read back from its manifest."""
    from reservoir.keys import create_signing_key
    from transferer.export import export_bundle
    from transferer.format import MANIFEST, parse_manifest

    if not any(app.home.keys_dir.iterdir()):
        create_signing_key(app.home.keys_dir)
    result = export_bundle(app, out)
    if result.path is None:
        return {}
    manifest = parse_manifest((result.path / MANIFEST).read_bytes())
    return {r["name"]: r for r in manifest.releases}


def test_denied_never_bundled_and_reviewed_appears_after_approval(
    tmp_path: Path, licensed_wheels: dict[str, Path], scan_worker: ScanWorker
) -> None:
    wanted = {k: v for k, v in licensed_wheels.items() if k in ("lic-mit", "lic-gpl", "lic-eula")}
    app = make_hub(tmp_path / "hub", wanted)
    vet_releases(app, release_ids(app), scan_worker)
    first = bundled(app, tmp_path / "out")
    assert set(first) == {"lic-mit"}  # gpl held, eula denied
    home = str(app.home_root)
    approve = CliRunner().invoke(cli, ["--home", home, "licenses", "review", "lic-gpl", "1.0", "--approve",
                                       "--reason", "ok for internal use", "--by", "legal"])
    assert approve.exit_code == 0, approve.output
    second = bundled(app, tmp_path / "out")
    assert set(second) == {"lic-gpl"}
    # The decision travels in the manifest, to the site.
    meta = second["lic-gpl"]["meta"]
    assert isinstance(meta, dict)
    assert meta["vetting"]["decisions"][0]["who"] == "legal" and meta["vetting"]["concluded"] == "GPL-3.0-only"
    # The denied release never leaves, not even in a full bundle.
    from transferer.export import export_bundle
    from transferer.format import MANIFEST, parse_manifest

    full = export_bundle(app, tmp_path / "full", full=True)
    assert full.path is not None
    names = {r["name"] for r in parse_manifest((full.path / MANIFEST).read_bytes()).releases}
    assert names == {"lic-mit", "lic-gpl"}
    app.close()
