"""`reservoir channel add | ls | rm` and `reservoir sync` over several channels."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from downloader.pypi.targets import host_platform
from downloader.pypi.ecosystem import host_pip_index_url
from reservoir.cli import cli
from tests.support.pypi_index import write_index
from tests.support.wheels import ProjectSpec, build_wheel


def invoke(home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], env=env, catch_exceptions=False)


@pytest.fixture(autouse=True)
def no_installed_vetters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Syncs here do not run the installed vetters (license scans are slow and tested in their own
    suite); the vetting tests below install their own."""
    monkeypatch.setattr("hub.sync.vetters", lambda: [])


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    home = tmp_path / "hub"
    assert invoke(home, "init", "--role", "hub").exit_code == 0
    return home


def test_defaults_come_from_the_host(hub: Path, tmp_path: Path) -> None:
    index = (tmp_path / "index").as_uri()
    added = invoke(hub, "channel", "add", "main", "--kind", "pypi", "--package", "requests",
                   env={"PIP_INDEX_URL": index})
    assert added.exit_code == 0, added.output
    listed = invoke(hub, "channel", "ls").stdout
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"main  pypi  {index}/" in listed
    assert f"python {python} on {host_platform()}; latest 1; sdists off" in listed
    assert "releases: 0; last sync: never" in listed


def test_default_index_without_env_is_pips_configured_or_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    from pip._internal.models.index import PyPI

    url = host_pip_index_url()
    assert url.startswith(("http://", "https://", "file://"))
    configured = [line for line in __import__("subprocess").run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout.splitlines()
        if line.startswith("global.index-url=")]
    assert url == (configured[0].split("=", 1)[1].strip("'\"") if configured else PyPI.simple_url)


def test_options_are_stored_as_the_catalog_says(hub: Path, tmp_path: Path) -> None:
    reqs = tmp_path / "reqs.txt"
    reqs.write_text("# comment\nclick>=8  # trailing comment\n\nrich[jupyter]==13.0 ; python_version >= '3.8'\n")
    added = invoke(hub, "channel", "add", "main", "--kind", "pypi", "--upstream", "http://127.0.0.1:9/simple",
                   "--package", "requests", "--requirements", str(reqs), "--python", "3.10", "--python", "3.12",
                   "--platform", "win_amd64", "--latest", "3", "--sdists")
    assert added.exit_code == 0, added.output
    from sqlalchemy import select

    from reservoir.db import open_database
    from reservoir.models import Channel

    db = open_database(f"sqlite:///{hub / 'reservoir.db'}")
    with db.transaction() as session:
        channel = session.scalars(select(Channel)).one()
        assert channel.upstream == "http://127.0.0.1:9/simple/"
        assert channel.options == {
            "packages": ["requests", "click>=8", "rich[jupyter]==13.0 ; python_version >= '3.8'"],
            "pythons": ["3.10", "3.12"],
            "platforms": ["win_amd64"],
            "latest": 3,
            "sdists": True,
        }
    db.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream", "ftp://127.0.0.1/simple"], "is not an http(s):// or file:// URL"),
        (["--python", "three"], "--python 'three' is not a Python version"),
        (["--platform", "any"], "--platform 'any' is not a platform tag"),
        (["--latest", "0"], "--latest 0 must be at least 1"),
    ],
)
def test_bad_options_get_one_line_and_create_nothing(hub: Path, args: list[str], message: str) -> None:
    result = invoke(hub, "channel", "add", "main", "--kind", "pypi", "--package", "requests",
                    "--upstream", "http://127.0.0.1:9/simple", *args)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert message in result.stderr
    assert "no channels" in invoke(hub, "channel", "ls").stdout


def test_a_channel_needs_a_package_and_a_unique_name(hub: Path) -> None:
    base = ["channel", "add", "main", "--kind", "pypi", "--upstream", "http://127.0.0.1:9/simple"]
    assert "at least one --package" in invoke(hub, *base).stderr
    assert invoke(hub, *base, "--package", "requests").exit_code == 0
    again = invoke(hub, *base, "--package", "click")
    assert again.exit_code == 2 and "channel 'main' already exists" in again.stderr


def test_rm_forgets_the_channel(hub: Path) -> None:
    assert invoke(hub, "channel", "add", "main", "--kind", "pypi", "--upstream", "http://127.0.0.1:9/simple",
                  "--package", "requests").exit_code == 0
    assert invoke(hub, "channel", "rm", "main").exit_code == 0
    assert "no channels" in invoke(hub, "channel", "ls").stdout
    missing = invoke(hub, "channel", "rm", "main")
    assert missing.exit_code == 1 and "channel 'main' does not exist" in missing.stderr


def test_sync_goes_on_past_a_failing_channel_and_exits_non_zero(hub: Path, tmp_path: Path) -> None:
    tree = write_index(tmp_path / "upstream", build_wheel(ProjectSpec("solo", "1.0"), tmp_path / "dist"))
    for name, package in (("bad", "absent"), ("good", "solo")):
        assert invoke(hub, "channel", "add", name, "--kind", "pypi", "--upstream", tree.file_url,
                      "--package", package).exit_code == 0
    result = invoke(hub, "sync")
    assert result.exit_code == 1
    assert "error: channel bad: project 'absent': not found upstream" in result.stderr
    assert "+ solo 1.0 (1 file," in result.stdout
    assert "releases: 1; last sync: ok" in invoke(hub, "channel", "ls").stdout
    unknown = invoke(hub, "sync", "nope")
    assert unknown.exit_code == 1 and "channel 'nope' does not exist" in unknown.stderr


def test_sync_runs_on_a_hub_only(tmp_path: Path) -> None:
    site = tmp_path / "site"
    assert invoke(site, "init", "--role", "site").exit_code == 0
    result = invoke(site, "sync")
    assert result.exit_code == 2 and "runs on a hub" in result.stderr


def test_a_second_sync_of_the_same_channel_is_refused(hub: Path, tmp_path: Path) -> None:
    import fcntl

    assert invoke(hub, "channel", "add", "main", "--kind", "pypi", "--upstream", "http://127.0.0.1:9/simple",
                  "--package", "requests").exit_code == 0
    with open(hub / "tmp" / "sync-main.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running sync holds it
        result = invoke(hub, "sync", "main")
    assert result.exit_code == 1
    assert "channel 'main' is being synced by another process" in result.stderr
