"""`reservoir serve` and `reservoir users` refuse bad input at the edge: one line naming the option, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reservoir.home import create_home

# A configured host that cannot be bound: should an option slip through validation, serve fails instead of running.
UNBINDABLE = '\n[server]\nhost = "192.0.2.1"\n'


def reservoir(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reservoir", "--home", str(home), *args],
        input=stdin, capture_output=True, text=True, timeout=120,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    home = create_home(tmp_path / "site", "site")
    home.config_path.write_text(home.config_path.read_text() + UNBINDABLE)
    return home.root


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--port", "99999"], "'--port'"),
        (["--port", "-1"], "'--port'"),
        (["--port", "http"], "'--port'"),
        (["--workers", "-3"], "'--workers'"),
        (["--workers", "0"], "'--workers'"),
        (["--host", "999.1.1.1"], "'--host'"),
        (["--host", "no-such-host.invalid"], "'--host'"),
        (["--watch-interval", "-1"], "'--watch-interval'"),
    ],
)
def test_bad_serve_options_get_one_line_naming_the_option(site: Path, args: list[str], named: str) -> None:
    line = one_line(reservoir(site, "serve", *args))
    assert line.startswith("error: ") and named in line and "reservoir serve --help" in line


def test_an_address_this_machine_does_not_have_is_blamed_on_host(site: Path) -> None:
    line = one_line(reservoir(site, "serve", "--host", "192.0.2.1", "--port", "0", "--workers", "1"))
    assert "192.0.2.1" in line and "--host" in line and "--port" not in line


@pytest.mark.parametrize(
    ("server", "named"),
    [('port = 99999', "[server] port"), ('port = "http"', "[server] port"), ('host = "999.1.1.1"', "[server] host")],
)
def test_bad_server_settings_get_one_line_naming_the_setting(tmp_path: Path, server: str, named: str) -> None:
    home = create_home(tmp_path / "site", "site")
    home.config_path.write_text(home.config_path.read_text() + f"\n[server]\n{server}\n")
    assert named in one_line(reservoir(home.root, "serve", "--nginx-config"))


@pytest.mark.parametrize("command", [["users", "add", "bob", "--password-stdin"], ["users", "token", "bob"], ["users", "ls"]])
def test_users_commands_run_on_a_site_only(tmp_path: Path, command: list[str]) -> None:
    hub = create_home(tmp_path / "hub", "hub").root
    line = one_line(reservoir(hub, *command, stdin="a long password\n"))
    assert "runs on a site" in line and str(hub) in line
    assert not (hub / "keys" / "site-users.json").exists()


def test_a_host_name_and_an_ipv6_address_are_accepted(site: Path) -> None:
    result = reservoir(site, "serve", "--nginx-config", "--host", "localhost", "--port", "8081")
    assert result.returncode == 0, result.stderr
    assert "listen localhost:8081;" in result.stdout
    result = reservoir(site, "serve", "--nginx-config", "--host", "::1", "--port", "8081")
    assert result.returncode == 0, result.stderr
    assert "listen [::1]:8081;" in result.stdout
