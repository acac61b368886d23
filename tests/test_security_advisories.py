"""OSV advisories in the real schema: import (file, folder, all.zip), matching, quarantine, site flags."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from licenses.models import Advisory
from licenses.security.osv import findings_for, severity_of
from licenses.security.versions import debian, pep440, rpm
from reservoir.cli import cli
from reservoir.context import AppContext
from reservoir.home import create_home
from reservoir.models import Channel, Gate, Release

ALLOWED_BY_POLICY = {"vetting": {"policy": {"decision": "allow", "reason": "MIT (permissive): allow"}, "decisions": []}}


def osv(osv_id: str, ecosystem: str, name: str, ranges: list[dict[str, Any]] | None = None,
        versions: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    affected: dict[str, Any] = {"package": {"ecosystem": ecosystem, "name": name}}
    if ranges is not None:
        affected["ranges"] = ranges
    if versions is not None:
        affected["versions"] = versions
    return {"schema_version": "1.6.0", "id": osv_id, "modified": "2026-01-01T00:00:00Z",
            "published": "2026-01-01T00:00:00Z", "summary": f"{osv_id} in {name}", "affected": [affected], **extra}


def ecosystem_range(*events: dict[str, str]) -> list[dict[str, Any]]:
    return [{"type": "ECOSYSTEM", "events": list(events)}]


HIGH = {"database_specific": {"severity": "HIGH"}}
LOW = {"database_specific": {"severity": "LOW"}}


@pytest.mark.parametrize(("version", "affected"), [
    ("1.9", False), ("2.0a1", True), ("2.0", True), ("2.4.1rc1", True), ("2.4.1", False), ("3.0", False),
])
def test_pypi_ranges_with_prereleases(version: str, affected: bool) -> None:
    record = osv("GHSA-1", "PyPI", "Foo_Bar", ecosystem_range({"introduced": "2.0a1"}, {"fixed": "2.4.1"}))
    assert bool(findings_for([record], "pypi", "PyPI", "foo-bar", version, pep440.compare)) is affected


@pytest.mark.parametrize(("version", "affected"), [
    ("1.0~rc1-1", True), ("1.0-1", True), ("1.0-2", False), ("1:0.5-1", False),
])
def test_debian_tilde_and_epoch(version: str, affected: bool) -> None:
    record = osv("DSA-1", "Debian:12", "libfoo", ecosystem_range({"introduced": "0"}, {"fixed": "1.0-2"}))
    assert bool(findings_for([record], "apt", "Debian:12", "libfoo", version, debian.compare)) is affected
    assert not findings_for([record], "apt", "Debian:11", "libfoo", version, debian.compare)


@pytest.mark.parametrize(("version", "affected"), [
    ("1.0~rc1-1", True), ("1.0-1", True), ("1.0^git1-1", False), ("1.1-1", False), ("1:0.1-1", False),
])
def test_rpm_tilde_caret_and_epoch(version: str, affected: bool) -> None:
    record = osv("RHSA-1", "Red Hat", "foo", ecosystem_range({"introduced": "0"}, {"last_affected": "1.0-1"}))
    assert bool(findings_for([record], "yum", "Red Hat", "foo", version, rpm.compare)) is affected


def test_versions_list_and_withdrawn() -> None:
    listed = osv("PYSEC-1", "PyPI", "foo", versions=["1.2"])
    withdrawn = osv("PYSEC-2", "PyPI", "foo", versions=["1.3"], withdrawn="2026-02-01T00:00:00Z")
    assert [f.id for f in findings_for([listed, withdrawn], "pypi", "PyPI", "foo", "1.2", pep440.compare)] == ["PYSEC-1"]
    assert not findings_for([listed, withdrawn], "pypi", "PyPI", "foo", "1.3", pep440.compare)


def test_severity_from_cvss_vector() -> None:
    record = osv("CVE-1", "PyPI", "foo", severity=[
        {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}])
    assert severity_of(record) == "critical"
    assert severity_of(osv("CVE-2", "PyPI", "foo", severity=[
        {"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"}])) == "low"
    assert severity_of(osv("GHSA-2", "PyPI", "foo", database_specific={"severity": "MODERATE"})) == "medium"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[AppContext]:
    yield from make_home(tmp_path / "hub", "hub")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[AppContext]:
    yield from make_home(tmp_path / "site", "site")


def make_home(root: Path, role: str) -> Iterator[AppContext]:
    create_home(root, role)  # type: ignore[arg-type]
    app = AppContext(home_root=root)
    with app.db.transaction() as session:
        channel = Channel(name="py", kind="pypi", upstream="http://127.0.0.1:1/simple", options={})
        session.add(channel)
        for name, version in [("foo", "1.0"), ("foo", "2.0"), ("bar", "1.0"), ("evil", "0.1")]:
            session.add(Release(channel=channel, name=name, display_name=name, version=version, gate=Gate.ALLOWED,
                                meta=json.loads(json.dumps(ALLOWED_BY_POLICY))))
    yield app
    app.close()


def gates(app: AppContext) -> dict[str, tuple[Gate, str]]:
    with app.db.transaction() as session:
        return {f"{r.name}=={r.version}": (r.gate, r.gate_reason) for r in session.scalars(select(Release))}


def run(app: AppContext, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--home", str(app.home_root), *args])


def write_zip(path: Path, records: list[dict[str, Any]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for record in records:
            archive.writestr(f"{record['id']}.json", json.dumps(record))
    return path


def test_import_all_zip_quarantines_and_names_fixed_versions(hub: AppContext, tmp_path: Path) -> None:
    records = [
        osv("GHSA-aaaa", "PyPI", "foo", ecosystem_range({"introduced": "0"}, {"fixed": "1.5"}), **HIGH),
        osv("GHSA-bbbb", "PyPI", "bar", ecosystem_range({"introduced": "0"}, {"fixed": "1.1"}), **LOW),
        osv("MAL-2026-1", "PyPI", "evil", ecosystem_range({"introduced": "0"})),
        osv("GHSA-cccc", "PyPI", "foo", versions=["2.0"], withdrawn="2026-02-01T00:00:00Z", **HIGH),
    ]
    result = run(hub, "advisories", "import", str(write_zip(tmp_path / "all.zip", records)))
    assert result.exit_code == 0, result.output
    got = gates(hub)
    assert got["foo==1.0"][0] is Gate.QUARANTINED and "GHSA-aaaa" in got["foo==1.0"][1] and "fixed in 1.5" in got["foo==1.0"][1]
    assert got["foo==2.0"][0] is Gate.ALLOWED  # the only advisory naming 2.0 is withdrawn
    assert got["bar==1.0"][0] is Gate.ALLOWED  # low, under the default `high` threshold
    assert got["evil==0.1"][0] is Gate.QUARANTINED and "malicious" in got["evil==0.1"][1]
    report = json.loads(run(hub, "licenses", "report", "--format", "json").output)
    bar = next(r for r in report["releases"] if r["name"] == "bar")
    assert bar["advisories"][0]["id"] == "GHSA-bbbb" and bar["advisories"][0]["fixed"] == ["1.1"]


def test_threshold_is_configurable_and_new_advisories_reevaluate(hub: AppContext, tmp_path: Path) -> None:
    with (hub.home_root / "reservoir.toml").open("a") as config:
        config.write('\n[security]\nquarantine_severity = "low"\n')
    low = osv("GHSA-bbbb", "PyPI", "bar", ecosystem_range({"introduced": "0"}, {"fixed": "1.1"}), **LOW)
    (tmp_path / "one.json").write_text(json.dumps(low))
    assert run(hub, "advisories", "import", str(tmp_path / "one.json")).exit_code == 0
    assert gates(hub)["bar==1.0"][0] is Gate.QUARANTINED
    # The advisory is withdrawn upstream: re-importing it lifts the quarantine back to the license gate.
    withdrawn = {**low, "modified": "2026-03-01T00:00:00Z", "withdrawn": "2026-03-01T00:00:00Z"}
    folder = tmp_path / "osv"
    (folder / "PyPI").mkdir(parents=True)
    (folder / "PyPI" / "GHSA-bbbb.json").write_text(json.dumps(withdrawn))
    result = run(hub, "advisories", "import", str(folder))
    assert result.exit_code == 0 and "released bar==1.0" in result.output
    assert gates(hub)["bar==1.0"] == (Gate.ALLOWED, "license MIT (permissive): allow")


def test_site_flags_what_it_serves_without_unpublishing(site: AppContext, tmp_path: Path) -> None:
    record = osv("GHSA-aaaa", "PyPI", "foo", ecosystem_range({"introduced": "0"}, {"fixed": "1.5"}), **HIGH)
    (tmp_path / "a.json").write_text(json.dumps(record))
    result = run(site, "advisories", "import", str(tmp_path / "a.json"))
    assert result.exit_code == 0 and "flagged foo==1.0" in result.output
    assert gates(site)["foo==1.0"][0] is Gate.ALLOWED
    page = run(site, "licenses", "report", "--format", "html").output
    assert "advisory GHSA-aaaa (high): fixed in 1.5" in page


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "not valid JSON"),
    (b'{"summary": "no id"}', "not an OSV record (no id)"),
    (b'[{"id": "X-1", "affected": {}}]', "'affected' must be a list"),
])
def test_bad_advisory_file_is_one_line_error_and_imports_nothing(
    hub: AppContext, tmp_path: Path, content: bytes, message: str
) -> None:
    folder = tmp_path / "osv"
    folder.mkdir()
    (folder / "a-good.json").write_text(json.dumps(osv("GHSA-aaaa", "PyPI", "foo", versions=["1.0"], **HIGH)))
    (folder / "b-bad.json").write_bytes(content)
    result = run(hub, "advisories", "import", str(folder))
    assert result.exit_code != 0 and message in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("error:")]) == 1
    with hub.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Advisory)) == 0
    assert gates(hub)["foo==1.0"][0] is Gate.ALLOWED


def test_missing_path_and_bad_zip(hub: AppContext, tmp_path: Path) -> None:
    assert "no such file or folder" in run(hub, "advisories", "import", str(tmp_path / "nope.json")).output
    (tmp_path / "all.zip").write_bytes(b"not a zip")
    assert "not a zip archive" in run(hub, "advisories", "import", str(tmp_path / "all.zip")).output
