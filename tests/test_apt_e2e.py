"""Real apt-get in a debootstrap root against the site's signed APT repository (served on 127.0.0.1).

The site's catalog is filled with real `.deb`s (dpkg-deb), published, served
by `reservoir serve`; the root's only apt source is what `reservoir apt
sources` prints (the site key inline, no trusted=yes). Then: install and run
the program, upgrade to a newer version published incrementally, and an
`apt-get update` loop that never fails while the site republishes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reservoir.context import AppContext
from restorer.gpgkey import stop_agent
from restorer.publish import publish_changes, publish_site
from restorer.publish.apt import leaf_key
from tests.support.apt_site import add_deb, apt_channel, site_app
from tests.support.debroot import NoDebootstrap, fresh_root, in_root, remove_root
from tests.support.debs import (
    FIXTURE_SET,
    HELLO_SCRIPT,
    DebSpec,
    build_deb,
    have_dpkg_deb,
)
from tests.support.site import run_server

pytestmark = pytest.mark.slow
REQUIRE = os.environ.get("RESERVOIR_REQUIRE_CLIENTS") == "1"
CHANNEL = "fixture"


def _skip_or_fail(reason: str) -> None:
    if REQUIRE:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def debroot(tmp_path: Path) -> Iterator[Path]:
    if not have_dpkg_deb() or shutil.which("gpg") is None:
        _skip_or_fail("dpkg-deb and gpg are needed")
    into = tmp_path / "root"
    try:
        root = fresh_root(into)
    except NoDebootstrap as exc:
        _skip_or_fail(f"no debootstrap root: {exc}")
    yield root
    remove_root(into)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[AppContext]:
    app = site_app(tmp_path / "site")
    yield app
    stop_agent(app.home.keys_dir / "gnupg")
    app.close()


def fill(app: AppContext, out: Path) -> None:
    with app.db.transaction() as session:
        channel = apt_channel(session, CHANNEL, suites=["stable", "stable-updates"], components=["main"])
        for suite, spec in FIXTURE_SET:
            add_deb(session, app.blobs, channel, build_deb(spec, out / suite), suite)


def sources(app: AppContext, url: str, channel: str = CHANNEL) -> str:
    done = subprocess.run([sys.executable, "-m", "reservoir", "--home", str(app.home_root), "apt", "sources",
                           channel, "--url", url], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def apt(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return in_root(root, "apt-get", "-o", "Acquire::Retries=0", *args)


def not_found(lines: list[str]) -> list[str]:
    return [line for line in lines if re.search(r'" 404 ', line) or " 404 " in line]


def test_install_upgrade_and_update_during_publishes(site: AppContext, debroot: Path, tmp_path: Path) -> None:
    fill(site, tmp_path / "debs")
    publish_site(site)
    with run_server(site.home_root) as server:
        (debroot / "etc/apt/sources.list.d/reservoir.sources").write_text(sources(site, server.url))
        update = apt(debroot, "update")
        assert update.returncode == 0, update.stdout + update.stderr
        assert "W:" not in update.stderr and "E:" not in update.stderr, update.stderr
        install = apt(debroot, "install", "-y", "hello")
        assert install.returncode == 0, install.stdout + install.stderr
        ran = in_root(debroot, "hello")
        assert ran.stdout.strip() == "Hello from the fixture archive", ran
        # What apt chose across both suites: the newest hello, and the libgreet1 that satisfies it.
        shown = in_root(debroot, "dpkg-query", "-W", "-f", "${Package} ${Version}\n", "hello", "libgreet1")
        assert shown.stdout.split("\n")[:2] == ["hello 1.1-1", "libgreet1 2.0-1"]
        # An apt client asked for nothing the site lacks.
        asked = server.access_lines()
        assert any("/apt/fixture/dists/stable/InRelease" in line for line in asked), asked[:5]
        assert any("/by-hash/SHA256/" in line for line in asked), asked
        assert not_found(asked) == []

        # A newer hello, published incrementally: apt-get upgrade takes it.
        newer = DebSpec("hello", "1.2-1", depends="libgreet1 (>= 2.0), mail-transport-agent, "
                        "nosuch-pager | less-fixture, greet-data, python3-fixture:any",
                        files={"usr/bin/hello": HELLO_SCRIPT.replace("Hello", "Hello again")})
        with site.db.transaction() as session:
            channel = apt_channel(session, CHANNEL)
            add_deb(session, site.blobs, channel, build_deb(newer, tmp_path / "newer"), "stable-updates")
        (result,) = publish_changes(site, {"apt": {leaf_key(CHANNEL, "stable-updates", "main")}})
        assert result.rendered == 1 and not result.full
        assert apt(debroot, "update").returncode == 0
        upgrade = apt(debroot, "upgrade", "-y")
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        assert in_root(debroot, "hello").stdout.strip() == "Hello again from the fixture archive"

        # While the site republishes in a loop, apt-get update never fails (no hash sum mismatch).
        stop = threading.Event()
        errors: list[BaseException] = []
        published = [0]

        def republish() -> None:
            app = AppContext(site.home_root)
            try:
                n = 0
                while not stop.is_set():
                    n += 1
                    spec = DebSpec("less-fixture", f"3.0-{n + 1}")
                    with app.db.transaction() as session:
                        channel = apt_channel(session, CHANNEL)
                        add_deb(session, app.blobs, channel, build_deb(spec, tmp_path / "loop"), "stable")
                    publish_changes(app, {"apt": {leaf_key(CHANNEL, "stable", "main")}})
                    published[0] += 1
            except BaseException as exc:  # noqa: BLE001 (reported by the test)
                errors.append(exc)
            finally:
                app.close()

        worker = threading.Thread(target=republish, daemon=True)
        worker.start()
        try:
            for _ in range(20):
                run = apt(debroot, "update")
                assert run.returncode == 0 and "E:" not in run.stderr and "W:" not in run.stderr, run.stderr
        finally:
            stop.set()
            worker.join(timeout=120)
        assert not errors, errors
        assert published[0] >= 2, "the site did not republish during the updates"
        assert not_found(server.access_lines()) == []


def test_hub_to_bundle_to_site_then_apt_get(debroot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole flow: a signed upstream on 127.0.0.1, `reservoir sync`, export, import, serve, apt-get install."""
    from click.testing import CliRunner

    from reservoir.cli import cli
    from tests.support.apt_repo import make_key, write_repo
    from tests.support.http_folder import serve_folder

    monkeypatch.setattr("hub.sync.vetters", lambda: [])  # scancode is slow and tested on its own

    def invoke(home: Path, *args: str) -> str:
        done = CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)
        assert done.exit_code == 0, done.output
        return done.output

    key = make_key(tmp_path / "archive-key")
    hub, site_home, media = tmp_path / "hub", tmp_path / "s", tmp_path / "media"
    built: dict[str, list[Path]] = {}
    for suite, spec in FIXTURE_SET:
        built.setdefault(suite, []).append(build_deb(spec, tmp_path / "debs" / suite))
    repo_root = tmp_path / "upstream"
    write_repo(repo_root, built, key)
    try:
        with serve_folder(repo_root) as upstream:
            invoke(hub, "init", "--role", "hub")
            invoke(hub, "channel", "add", CHANNEL, "--kind", "apt", "--upstream", upstream.url, "--suite", "stable",
                   "--suite", "stable-updates", "--component", "main", "--arch", "amd64", "--package", "hello",
                   "--keyring", str(key.public), "--keep", "2", "--hold-uninstallable")
            invoke(hub, "sync")
            invoke(hub, "key", "export", "--out", str(tmp_path / "hub.pub"))
            invoke(site_home, "init", "--role", "site")
            invoke(site_home, "trust", "add", str(tmp_path / "hub.pub"))
            bundle = invoke(hub, "export", "--out", str(media)).strip().splitlines()[-1]
            invoke(site_home, "import", bundle)
            with run_server(site_home) as server:
                site = AppContext(site_home)
                with site.db.session() as session:
                    from reservoir.models import Channel

                    options = session.query(Channel).filter_by(name=CHANNEL).one().options
                assert (options["keep"], options["hold_uninstallable"]) == (2, True)  # the site's policy, from the hub
                (debroot / "etc/apt/sources.list.d/reservoir.sources").write_text(sources(site, server.url))
                update = apt(debroot, "update")
                assert update.returncode == 0 and "W:" not in update.stderr, update.stdout + update.stderr
                install = apt(debroot, "install", "-y", "hello")
                assert install.returncode == 0, install.stdout + install.stderr
                assert in_root(debroot, "hello").stdout.strip() == "Hello from the fixture archive"

                # A newer upstream hello: sync, a second (incremental) bundle, and apt-get upgrade takes it.
                newer = DebSpec("hello", "1.2-1", depends="libgreet1 (>= 2.0), mail-transport-agent, "
                                "nosuch-pager | less-fixture, greet-data, python3-fixture:any",
                                files={"usr/bin/hello": HELLO_SCRIPT.replace("Hello", "Hello again")})
                built["stable-updates"].append(build_deb(newer, tmp_path / "debs" / "newer"))
                write_repo(repo_root, built, key)
                invoke(hub, "sync")
                second = invoke(hub, "export", "--out", str(media)).strip().splitlines()[-1]
                invoke(site_home, "import", second)
                assert apt(debroot, "update").returncode == 0
                upgrade = apt(debroot, "upgrade", "-y")
                assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
                assert in_root(debroot, "hello").stdout.strip() == "Hello again from the fixture archive"
                assert not_found(server.access_lines()) == []
                site.close()
    finally:
        key.close()
        stop_agent(site_home / "keys" / "gnupg")


def test_real_upstream_hello_and_python3_yaml_installed_from_the_site(
        debroot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's real archive and keyring: `hello` and `python3-yaml` synced, exported, imported, served, installed.

    The closure is the channel's default (Essential and required packages included, so it would install
    from a bare root); the minbase root already holds those at the suite's versions, so apt installs the
    rest. Every blob the sync stored is kept outside the checkout by sha256: a rerun fetches only the
    InReleases and what the archive changed since.
    """
    from click.testing import CliRunner

    from reservoir.blobs import BlobStore
    from reservoir.cli import cli
    from tests.support.debroot import (
        blob_cache,
        keep_blobs,
        reachable,
        real_source,
        seed_blobs,
    )

    monkeypatch.setattr("hub.sync.vetters", lambda: [])  # scancode is slow and tested on its own
    source = real_source()
    if source is None:
        _skip_or_fail("the host has no signed apt source")
    assert source is not None
    if not reachable(source.uris[0]):
        _skip_or_fail(f"{source.uris[0]} is not reachable")

    def invoke(home: Path, *args: str) -> str:
        done = CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)
        assert done.exit_code == 0, done.output
        return done.output

    hub, site_home, media = tmp_path / "hub", tmp_path / "s", tmp_path / "media"
    invoke(hub, "init", "--role", "hub")
    cache = blob_cache()
    seed_blobs(BlobStore(hub / "blobs"), cache)
    suites = [arg for suite in source.suites[:2] for arg in ("--suite", suite)]
    invoke(hub, "channel", "add", "real", "--kind", "apt", *suites, "--component",
           (source.components or ("main",))[0], "--package", "hello", "--package", "python3-yaml")
    synced = invoke(hub, "sync")
    assert "warning" not in synced, synced
    keep_blobs(BlobStore(hub / "blobs"), cache)
    invoke(hub, "key", "export", "--out", str(tmp_path / "hub.pub"))
    try:
        invoke(site_home, "init", "--role", "site")
        invoke(site_home, "trust", "add", str(tmp_path / "hub.pub"))
        bundle = invoke(hub, "export", "--out", str(media)).strip().splitlines()[-1]
        invoke(site_home, "import", bundle)
        site = AppContext(site_home)
        try:
            with run_server(site_home) as server:
                text = sources(site, server.url, "real")
                assert "trusted=yes" not in text.lower() and "Signed-By:" in text
                (debroot / "etc/apt/sources.list.d/reservoir.sources").write_text(text)
                update = apt(debroot, "update")
                assert update.returncode == 0, update.stdout + update.stderr
                assert "W:" not in update.stderr and "E:" not in update.stderr, update.stderr
                install = apt(debroot, "install", "-y", "--no-install-recommends", "hello", "python3-yaml")
                assert install.returncode == 0, install.stdout + install.stderr
                ran = in_root(debroot, "hello")
                assert ran.returncode == 0 and ran.stdout.strip() == "Hello, world!", ran
                yaml = in_root(debroot, "python3", "-c", "import yaml; print(yaml.safe_load('a: [1, 2]'))")
                assert yaml.returncode == 0 and yaml.stdout.strip() == "{'a': [1, 2]}", yaml
                asked = server.access_lines()
                assert any("/apt/real/pool/" in line for line in asked), asked[:5]
                assert not_found(asked) == []
        finally:
            site.close()
    finally:
        stop_agent(site_home / "keys" / "gnupg")
