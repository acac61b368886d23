"""`reservoir serve --nginx-config` run by a real nginx: same tree, same negotiation."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reservoir.context import AppContext
from restorer.nginx import NginxSite, render_nginx_config
from restorer.publish import publish_site
from tests.support.clients import require_executable
from tests.support.site import free_port, run_nginx
from tests.test_serve_pypi import PIP_ACCEPT, RunningServer, pip, request


@pytest.fixture
def nginx(site: AppContext, tmp_path: Path) -> Iterator[RunningServer]:
    binary = require_executable("nginx")
    publish_site(site)
    port = free_port()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    # The CLI prints the server block; the test wraps it into a whole nginx.conf.
    printed = subprocess.run(
        [sys.executable, "-m", "reservoir", "--home", str(site.home.root), "serve", "--nginx-config",
         "--host", "127.0.0.1", "--port", str(port)],
        capture_output=True, text=True, check=True,
    ).stdout
    assert printed == render_nginx_config(NginxSite(site.home.trees_dir, f"127.0.0.1:{port}", None))
    conf = prefix / "nginx.conf"
    # Workers run as root here only because pytest's temporary folders are private to root.
    conf.write_text(
        render_nginx_config(
            NginxSite(site.home.trees_dir, f"127.0.0.1:{port}", None), standalone=True, prefix=prefix, user="root"
        )
    )
    check = subprocess.run([binary, "-t", "-c", str(conf), "-p", str(prefix)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    with run_nginx(binary, conf, prefix, port) as server:
        yield server


def test_nginx_negotiates_like_reservoir_serve(nginx: RunningServer) -> None:
    status, headers, body = request(nginx, "/pypi/simple/alpha/", {"Accept": PIP_ACCEPT})
    assert status == 200, body
    assert headers["content-type"].startswith("application/vnd.pypi.simple.v1+json")
    assert json.loads(body)["name"] == "alpha"
    status, headers, body = request(nginx, "/pypi/simple/alpha/", {"Accept": "text/html"})
    assert status == 200 and headers["content-type"].startswith("text/html") and b"<a href=" in body
    status, headers, body = request(
        nginx, "/pypi/simple/alpha/", {"Accept": "application/vnd.pypi.simple.v1+json;q=0, text/html"}
    )
    assert headers["content-type"].startswith("text/html")
    status, headers, body = request(nginx, "/pypi/simple/?format=application/vnd.pypi.simple.v1%2Bjson")
    assert json.loads(body)["meta"]["api-version"] == "1.1"
    status, headers, compressed = request(nginx, "/pypi/simple/alpha/", {"Accept": PIP_ACCEPT, "Accept-Encoding": "gzip"})
    assert headers.get("content-encoding") == "gzip" and json.loads(gzip.decompress(compressed))["name"] == "alpha"
    status, headers, _ = request(nginx, "/pypi/simple/alpha")
    assert status == 301 and headers["location"].endswith("/pypi/simple/alpha/")


def test_pip_installs_through_nginx(nginx: RunningServer, tmp_path: Path) -> None:
    result = pip("install", "--no-cache-dir", "--index-url", f"{nginx.url}/pypi/simple/", "--target", str(tmp_path / "t"), "alpha")
    assert result.returncode == 0, result.stderr
    assert {p.name.split("-")[0] for p in (tmp_path / "t").glob("*.dist-info")} == {"alpha", "beta"}


def test_nginx_follows_an_atomic_republish(nginx: RunningServer, site: AppContext) -> None:
    before = request(nginx, "/pypi/simple/", {"Accept": PIP_ACCEPT})[2]
    publish_site(site)
    after = request(nginx, "/pypi/simple/", {"Accept": PIP_ACCEPT})
    assert after[0] == 200 and after[2] == before
