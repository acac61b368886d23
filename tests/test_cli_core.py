from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from reservoir.cli import cli
from reservoir.keys import load_public_pem


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reservoir", *args], capture_output=True, text=True)


def test_init_creates_a_hub_home_with_a_key(tmp_path: Path) -> None:
    home = tmp_path / "hub"
    result = run("--home", str(home), "init", "--role", "hub")
    assert result.returncode == 0, result.stderr
    assert (home / "reservoir.toml").is_file()
    assert (home / "reservoir.db").is_file()
    assert (home / "keys" / "hub.key").stat().st_mode & 0o077 == 0
    out = tmp_path / "hub.pub"
    assert run("--home", str(home), "key", "export", "--out", str(out)).returncode == 0
    load_public_pem(out.read_bytes(), str(out))


def test_init_refuses_an_existing_home(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["--home", str(tmp_path), "init", "--role", "site"]).exit_code == 0
    again = runner.invoke(cli, ["--home", str(tmp_path), "init", "--role", "site"])
    assert again.exit_code == 2
    assert "already a Reservoir home" in again.output


def test_uninitialised_home_gets_a_one_line_error(tmp_path: Path) -> None:
    result = run("--home", str(tmp_path / "nothing"), "key", "export", "--out", str(tmp_path / "k"))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a Reservoir home" in lines[0] and "reservoir" in lines[0]


def test_site_has_no_signing_key(tmp_path: Path) -> None:
    home = tmp_path / "site"
    assert run("--home", str(home), "init", "--role", "site").returncode == 0
    result = run("--home", str(home), "key", "export", "--out", str(tmp_path / "k"))
    assert result.returncode == 2
    assert "runs on a hub" in result.stderr


def test_blobs_verify_reports_corruption(tmp_path: Path) -> None:
    home = tmp_path / "hub"
    assert run("--home", str(home), "init", "--role", "hub").returncode == 0
    from reservoir.blobs import BlobStore

    store = BlobStore(home / "blobs")
    sha = store.put_bytes(b"content")
    assert run("--home", str(home), "blobs", "verify").returncode == 0
    store.path(sha).write_bytes(b"tampered")
    result = run("--home", str(home), "blobs", "verify")
    assert result.returncode == 1
    assert "1 corrupt" in result.stdout


def test_commands_that_need_no_database_or_network_do_not_load_their_libraries() -> None:
    """Start-up is most of a short command's time: the database layer and the http client load only when used.

    Every component registers its commands at start-up, so one eager import in
    any of them would put SQLAlchemy or aiohttp in front of every command
    (session commands, which only talk to a server, most of all).
    """
    probe = (
        "import sys; from reservoir.cli import main; sys.argv = ['reservoir', 'session', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('sqlalchemy', 'aiohttp', 'alembic', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
