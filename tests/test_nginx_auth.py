"""nginx's password file: written only for an nginx configuration, private, with hashes nginx checks (real nginx)."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reservoir.context import AppContext
from restorer.auth import HTPASSWD_FILE, AccountStore, sha512_crypt
from restorer.nginx import NginxSite, render_nginx_config
from restorer.publish import publish_site
from tests.support.clients import require_executable
from tests.support.site import free_port, run_nginx
from tests.test_serve_pypi import RunningServer, request


def reservoir(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reservoir", "--home", str(home), *args],
        input=stdin, capture_output=True, text=True, timeout=120,
    )


def add_user(home: Path, name: str, password: str) -> None:
    result = reservoir(home, "users", "add", name, "--password-stdin", stdin=password + "\n")
    assert result.returncode == 0, result.stderr


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def use_basic_auth(site: AppContext) -> None:
    config = site.home.config_path
    config.write_text(config.read_text() + '\n[server]\nauth = "basic"\n')


def test_sha512_crypt_matches_the_reference_and_openssl() -> None:
    # The test vectors of Drepper's specification.
    assert sha512_crypt("Hello world!", "saltstring") == (
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
    )
    assert sha512_crypt("Hello world!", "saltstringsaltstring", rounds=10000) == (
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."
    )
    openssl = require_executable("openssl")
    for password in ("correct horse", "é ü 😀 long " * 10, "x"):
        ours = sha512_crypt(password)
        salt = ours.split("$")[2]
        theirs = subprocess.run(
            [openssl, "passwd", "-6", "-salt", salt, "-stdin"], input=password, capture_output=True, text=True, check=True
        ).stdout.strip()
        assert ours == theirs


def test_users_add_writes_no_htpasswd_and_rewrites_an_old_one_privately(site: AppContext) -> None:
    home = site.home.root
    htpasswd = site.home.keys_dir / HTPASSWD_FILE
    add_user(home, "alice", "correct horse")
    assert not htpasswd.exists()
    stored = json.loads((site.home.keys_dir / "site-users.json").read_text())["alice"]
    assert stored["password_crypt"].startswith("$6$") and "password_ssha" not in stored
    # What an older version left: a world-readable file of salted SHA-1, and the same hash in the accounts file.
    users = site.home.keys_dir / "site-users.json"
    old = json.loads(users.read_text())
    old["bob"] = {"admin": False, "password_scrypt": "", "password_ssha": "{SSHA}b2xk", "token_sha256": []}
    users.write_text(json.dumps(old))
    htpasswd.write_text("bob:{SSHA}b2xk\n")
    htpasswd.chmod(0o644)
    add_user(home, "carol", "another password")
    assert stat.S_IMODE(htpasswd.stat().st_mode) == 0o600
    lines = htpasswd.read_text().splitlines()
    assert sorted(line.split(":")[0] for line in lines) == ["alice", "carol"]
    assert all(line.split(":", 1)[1].startswith("$6$") for line in lines)
    assert "password_ssha" not in users.read_text()
    assert reservoir(home, "users", "rm", "alice").returncode == 0
    assert [line.split(":")[0] for line in htpasswd.read_text().splitlines()] == ["carol"]


def test_nginx_config_writes_a_private_htpasswd_and_keeps_the_group_nginx_reads_it_with(site: AppContext) -> None:
    use_basic_auth(site)
    home = site.home.root
    add_user(home, "alice", "correct horse")
    result = reservoir(home, "serve", "--nginx-config", "--port", "8081")
    assert result.returncode == 0, result.stderr
    htpasswd = site.home.keys_dir / HTPASSWD_FILE
    assert f"auth_basic_user_file {htpasswd};" in result.stdout
    assert stat.S_IMODE(htpasswd.stat().st_mode) == 0o600
    name, hashed = htpasswd.read_text().strip().split(":", 1)
    assert name == "alice" and hashed.startswith("$6$")
    # An operator lets nginx's workers (www-data) read it; rewriting keeps that, and nothing more.
    gid = os.getgid()
    if os.geteuid() == 0:
        try:
            import grp

            gid = grp.getgrnam("www-data").gr_gid
        except KeyError:
            pass
    os.chown(htpasswd, -1, gid)
    htpasswd.chmod(0o640)
    add_user(home, "bob", "another password")
    assert reservoir(home, "serve", "--nginx-config").returncode == 0
    st = htpasswd.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_gid == gid
    assert len(htpasswd.read_text().splitlines()) == 2


def test_nginx_config_warns_about_accounts_nginx_cannot_check(site: AppContext) -> None:
    use_basic_auth(site)
    store = AccountStore(site.home.keys_dir)
    store.set_password("alice", "correct horse", admin=False)
    accounts = store.load()
    accounts["alice"].password_crypt = ""  # set by an older version, which kept only SHA-1 for nginx
    store.save(accounts)
    result = reservoir(site.home.root, "serve", "--nginx-config")
    assert result.returncode == 0
    assert "account alice" in result.stderr and "users add alice" in result.stderr


@pytest.fixture
def nginx_with_auth(site: AppContext, tmp_path: Path) -> Iterator[RunningServer]:
    binary = require_executable("nginx")
    use_basic_auth(site)
    add_user(site.home.root, "alice", "correct horse")
    publish_site(site)
    port = free_port()
    printed = reservoir(site.home.root, "serve", "--nginx-config", "--host", "127.0.0.1", "--port", str(port))
    assert printed.returncode == 0, printed.stderr
    htpasswd = site.home.keys_dir / HTPASSWD_FILE
    site_block = NginxSite(site.home.trees_dir, f"127.0.0.1:{port}", htpasswd)
    assert printed.stdout == render_nginx_config(site_block)
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    # Workers run as root here only because pytest's temporary folders are private to root.
    conf.write_text(render_nginx_config(site_block, standalone=True, prefix=prefix, user="root"))
    with run_nginx(binary, conf, prefix, port) as server:
        yield server


def test_real_nginx_accepts_the_password_and_refuses_a_wrong_one(nginx_with_auth: RunningServer) -> None:
    assert request(nginx_with_auth, "/pypi/simple/alpha/")[0] == 401
    assert request(nginx_with_auth, "/pypi/simple/alpha/", basic("alice", "wrong password"))[0] == 401
    assert request(nginx_with_auth, "/pypi/simple/alpha/", basic("nobody", "correct horse"))[0] == 401
    status, _, body = request(nginx_with_auth, "/pypi/simple/alpha/", basic("alice", "correct horse"))
    assert status == 200 and b"alpha" in body
