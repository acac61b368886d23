"""An APT channel on the hub: `reservoir channel add --kind apt`, `reservoir sync`, vetting, export.

The upstream is a repository built with `dpkg-deb` and signed with a
throwaway gpg key (tests/support/apt_repo.py), served over HTTP on
127.0.0.1 with ETags; the hub verifies it with real gpgv. A last test syncs
the real archive the host's apt sources name, with their real keyring.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from downloader.apt.schema import SCHEMA
from downloader.apt.sources import read_sources
from downloader.base import ecosystem
from hub.cache import AdapterStateRow
from reservoir.blobs import BlobStore
from reservoir.cli import cli
from reservoir.context import AppContext
from reservoir.db import open_database
from reservoir.models import (
    Artifact,
    ArtifactState,
    Channel,
    Release,
    ReleaseState,
    Snapshot,
)
from tests.support.apt_repo import (
    ArchiveKey,
    archive_and_stranger,
    Repo,
    sign_suite,
    write_index,
    write_repo,
)
from tests.support.clients import clients_required, require_executable
from tests.support.debs import HELLO_SCRIPT, DebSpec, build_deb, build_fixture_suites
from tests.support.http_folder import RunningFolder, serve_folder

CLOSURE = ["base-files-fixture==12-1", "greet-base==1.0-1", "greet-data==1.0-1", "hello==1.1-1",
           "less-fixture==3.0-1", "libgreet1==2.0-1", "python3-fixture==3.11-1", "tinymta==0.5-1"]
NEWER_HELLO = DebSpec("hello", "1.2-1", depends="libgreet1 (>= 2.0), mail-transport-agent, "
                      "nosuch-pager | less-fixture, greet-data, python3-fixture:any", files={"usr/bin/hello": HELLO_SCRIPT})


@pytest.fixture(autouse=True)
def no_installed_vetters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Syncs here do not run scancode (slow, tested in its own suite); the vetting test calls the hooks itself."""
    monkeypatch.setattr("hub.sync.vetters", lambda: [])


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ArchiveKey, ArchiveKey]]:
    for tool in ("gpg", "gpgv", "dpkg-deb"):
        require_executable(tool)
    with archive_and_stranger(tmp_path_factory.mktemp("apt-hub-keys")) as pair:
        yield pair


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory, keys: tuple[ArchiveKey, ArchiveKey]) -> dict[str, list[Path]]:
    out = tmp_path_factory.mktemp("apt-hub-debs")
    suites = build_fixture_suites(out)
    suites["newer"] = [build_deb(NEWER_HELLO, out / "newer")]
    return suites


@pytest.fixture
def repo(tmp_path: Path, keys: tuple[ArchiveKey, ArchiveKey], debs: dict[str, list[Path]]) -> Repo:
    return write_repo(tmp_path / "repo", {"stable": debs["stable"], "stable-updates": debs["stable-updates"]}, keys[0])


@pytest.fixture
def served(repo: Repo) -> Iterator[RunningFolder]:
    with serve_folder(repo.root) as running:
        yield running


def invoke(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)


def make_hub(home: Path, upstream: str, keyring: Path, *extra: str) -> None:
    assert invoke(home, "init", "--role", "hub").exit_code == 0
    added = invoke(home, "channel", "add", "deb", "--kind", "apt", "--upstream", upstream, "--suite", "stable",
                   "--suite", "stable-updates", "--component", "main", "--arch", "amd64", "--package", "hello",
                   "--keyring", str(keyring), *extra)
    assert added.exit_code == 0, added.output


def catalog(home: Path) -> dict[str, Any]:
    """Everything a sync may change, as plain data: releases, artifacts, snapshots, adapter state, blobs."""
    db = open_database(f"sqlite:///{home / 'reservoir.db'}")
    try:
        with db.transaction() as session:
            releases = sorted((r.name, r.version, r.state.value, r.display_name, json.dumps(r.meta, sort_keys=True))
                              for r in session.scalars(select(Release)))
            artifacts = sorted((a.filename, a.sha256, a.state.value, a.size) for a in session.scalars(select(Artifact)))
            snapshots = len(list(session.scalars(select(Snapshot))))
            state = sorted((s.key, json.dumps(s.value, sort_keys=True)) for s in session.scalars(select(AdapterStateRow)))
    finally:
        db.dispose()
    return {"releases": releases, "artifacts": artifacts, "snapshots": snapshots, "state": state,
            "blobs": sorted(p.name for p in (home / "blobs").rglob("*") if p.is_file())}


def active(home: Path) -> dict[str, Release]:
    db = open_database(f"sqlite:///{home / 'reservoir.db'}")
    try:
        with db.transaction() as session:
            found = {f"{r.name}=={r.version}": r for r in session.scalars(select(Release).where(
                Release.state == ReleaseState.ACTIVE))}
            for release in found.values():
                _ = [a.meta for a in release.artifacts]  # loaded before the session closes
                session.expunge(release)
            return found
    finally:
        db.dispose()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ channel add and ls


def test_channel_add_and_ls(tmp_path: Path, served: RunningFolder, keys: tuple[ArchiveKey, ArchiveKey]) -> None:
    home = tmp_path / "hub"
    make_hub(home, served.url, keys[0].public, "--latest", "2", "--recommends")
    listed = invoke(home, "channel", "ls").stdout
    assert f"deb  apt  {served.url}" in listed
    assert "packages: hello" in listed
    assert "suites: stable, stable-updates; components main; arch amd64; latest 2; recommends on; base included" in listed
    assert "releases: 0; last sync: never" in listed
    db = open_database(f"sqlite:///{home / 'reservoir.db'}")
    with db.transaction() as session:
        channel = session.scalars(select(Channel)).one()
        assert channel.options["sources"] == [
            {"suite": s, "uri": served.url, "keyrings": [str(keys[0].public)]} for s in ("stable", "stable-updates")]
    db.dispose()


@pytest.mark.parametrize(("args", "message"), [
    (["--suite", "stable", "--python", "3.11"], "--python is not an option of --kind apt"),
    (["--package", "hello"], "an apt channel needs at least one --suite"),
    (["--suite", "stable", "--package", "Hello_World"], "--package 'Hello_World' is not a Debian package name"),
    (["--suite", "../x", "--package", "hello"], "--suite '../x' is not a suite"),
    (["--suite", "stable", "--package", "hello", "--keyring", "/nonexistent.gpg"], "is not a file"),
])
def test_bad_apt_options_get_one_line_and_create_nothing(tmp_path: Path, args: list[str], message: str,
                                                         keys: tuple[ArchiveKey, ArchiveKey]) -> None:
    home = tmp_path / "hub"
    assert invoke(home, "init", "--role", "hub").exit_code == 0
    keyring = [] if "--keyring" in args else ["--keyring", str(keys[0].public)]
    result = invoke(home, "channel", "add", "deb", "--kind", "apt", "--upstream", "http://127.0.0.1:9/debian",
                    *keyring, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "no channels" in invoke(home, "channel", "ls").stdout


def test_a_pypi_channel_refuses_apt_options(tmp_path: Path) -> None:
    home = tmp_path / "hub"
    assert invoke(home, "init", "--role", "hub").exit_code == 0
    result = invoke(home, "channel", "add", "p", "--kind", "pypi", "--upstream", "http://127.0.0.1:9/simple",
                    "--package", "requests", "--suite", "bookworm")
    assert result.exit_code == 2 and "--suite is not an option of --kind pypi" in result.stderr


def test_defaults_come_from_the_hosts_apt_sources(tmp_path: Path) -> None:
    listed = [(s, suite) for s in read_sources() if "deb" in s.types and s.uris for suite in s.suites]
    if not listed:
        pytest.skip("this host has no apt source")
    source, suite = listed[0]
    home = tmp_path / "hub"
    assert invoke(home, "init", "--role", "hub").exit_code == 0
    added = invoke(home, "channel", "add", "host", "--kind", "apt", "--suite", suite, "--package", "hello")
    assert added.exit_code == 0, added.output
    db = open_database(f"sqlite:///{home / 'reservoir.db'}")
    with db.transaction() as session:
        channel = session.scalars(select(Channel)).one()
        assert channel.upstream == source.uris[0].rstrip("/") + "/"
        [resolved] = channel.options["sources"]
        assert resolved["suite"] == suite
        assert resolved["keyrings"] == list(source.signed_by) or source.signed_by == ()
    db.dispose()


# ------------------------------------------------------------------ sync


def test_sync_verifies_selects_and_fetches_then_a_second_sync_asks_only_for_inrelease(
        tmp_path: Path, served: RunningFolder, repo: Repo, keys: tuple[ArchiveKey, ArchiveKey],
        debs: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "hub"
    make_hub(home, served.url, keys[0].public)
    first = invoke(home, "sync")
    assert first.exit_code == 0, first.output
    assert "+ hello 1.1-1 (1 file," in first.stdout
    assert f"{len(CLOSURE)} releases selected, {len(CLOSURE)} added" in first.stdout
    assert "downloaded 8 files" in first.stdout
    assert served.count("/binary-amd64/") == 2 and served.count(".deb") == 8

    held = active(home)
    assert sorted(held) == CLOSURE
    hello = held["hello==1.1-1"]
    [deb] = hello.artifacts
    built = next(p for p in debs["stable-updates"] if p.name == "hello_1.1-1_amd64.deb")
    assert (deb.filename, deb.sha256, deb.size, deb.state) == (built.name, sha256_of(built), built.stat().st_size,
                                                                ArtifactState.STORED)
    assert deb.url == served.url + "pool/main/h/hello/hello_1.1-1_amd64.deb"
    assert deb.meta == {"architecture": "amd64", "upstream_path": "pool/main/h/hello/hello_1.1-1_amd64.deb"}
    assert hello.meta["suite"] == "stable-updates" and hello.meta["component"] == "main"
    assert hello.meta["control"].startswith("Package: hello\nVersion: 1.1-1\n")
    assert f"SHA256: {deb.sha256}" in hello.meta["control"]
    assert held["libgreet1==2.0-1"].meta["source"] == "greet"
    assert held["greet-data==1.0-1"].meta["architecture"] == "all"
    # The upstream suite's Origin and Label, which the site's Release repeats.
    assert (hello.meta["origin"], hello.meta["label"]) == ("Reservoir Tests", "Reservoir Tests")
    assert BlobStore(home / "blobs").has(deb.sha256)
    # What a bundle carries of each passes the site's APT schema.
    for release in held.values():
        SCHEMA.check_name(release.name)
        SCHEMA.check_version(release.version)
        for artifact in release.artifacts:
            SCHEMA.check_filename(artifact.filename, release.name, release.version)
        for key, check in SCHEMA.release_meta.items():
            if key in release.meta:
                check(release.meta[key], f"meta.{key}")
        for key, check in SCHEMA.artifact_meta.items():
            check(release.artifacts[0].meta[key], f"artifact.meta.{key}")

    before = catalog(home)
    served.reset()
    with monkeypatch.context() as patched:  # an unchanged upstream: no index is read, not even the stored one
        for name in ("open_index", "parse_packages"):
            patched.setattr(f"downloader.apt.adapter.{name}", lambda *a, **k: pytest.fail("an index was read"))
        second = invoke(home, "sync")
    assert second.exit_code == 0, second.output
    assert f"{len(CLOSURE)} releases selected, 0 added, 0 removed, 0 failed; downloaded 0 files" in second.stdout
    # One conditional request per suite, each answered 304; no Release, no index, no .deb.
    assert sorted(served.requests) == sorted([("/dists/stable/InRelease", 304), ("/dists/stable-updates/InRelease", 304)])
    assert catalog(home) == before  # a run with nothing new records no snapshot either

    # An upstream change: one new .deb fetched, the old hello dropped from the selection.
    write_repo(repo.root, {"stable": debs["stable"], "stable-updates": debs["stable-updates"] + debs["newer"]},
               keys[0])
    served.reset()
    third = invoke(home, "sync")
    assert third.exit_code == 0, third.output
    assert "+ hello 1.2-1 (1 file," in third.stdout and "- hello 1.1-1" in third.stdout
    assert "downloaded 1 files" in third.stdout
    assert served.count(".deb") == 1 and served.count("/binary-amd64/") == 1  # stable's index is unchanged
    assert served.count("/dists/stable-updates/InRelease") == 1  # the probe's answer is the one verified


def test_a_no_change_sync_past_a_kept_valid_until_verifies_again(tmp_path: Path, served: RunningFolder,
                                                                 keys: tuple[ArchiveKey, ArchiveKey],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe trusts a verified InRelease only until its Valid-Until: then the full sync checks it again."""
    home = tmp_path / "hub"
    make_hub(home, served.url, keys[0].public)
    assert invoke(home, "sync").exit_code == 0
    db = open_database(f"sqlite:///{home / 'reservoir.db'}")
    with db.transaction() as session:  # as if the time had passed the Valid-Until the last sync verified
        row = session.scalars(select(AdapterStateRow).where(AdapterStateRow.key == "suites")).one()
        row.value = {suite: {**state, "valid_until": "2000-01-01T00:00:00+00:00"} for suite, state in row.value.items()}
    db.engine.dispose()
    import downloader.apt.adapter as adapter

    read: list[str] = []
    real = adapter.open_index
    monkeypatch.setattr(adapter, "open_index", lambda data, choice, what: (read.append(what), real(data, choice, what))[1])
    again = invoke(home, "sync")
    assert again.exit_code == 0, again.output
    assert "0 added, 0 removed, 0 failed; downloaded 0 files" in again.stdout
    assert len(read) == 2  # both suites verified and read again (the fixture's InReleases carry no Valid-Until)


def test_unsatisfiable_dependency_is_a_warning_naming_the_chain(tmp_path: Path, keys: tuple[ArchiveKey, ArchiveKey],
                                                                debs: dict[str, list[Path]]) -> None:
    lonely = build_deb(DebSpec("lonely", "1.0-1", depends="libmissing1 (>= 2.34)"), tmp_path / "debs")
    repo = write_repo(tmp_path / "repo", {"stable": [lonely]}, keys[0])
    home = tmp_path / "hub"
    assert invoke(home, "init", "--role", "hub").exit_code == 0
    with serve_folder(repo.root) as served:
        assert invoke(home, "channel", "add", "deb", "--kind", "apt", "--upstream", served.url, "--suite", "stable",
                      "--package", "lonely", "--arch", "amd64", "--keyring", str(keys[0].public)).exit_code == 0
        result = invoke(home, "sync")
    assert result.exit_code == 0, result.output
    assert "warning: lonely -> libmissing1 (>= 2.34) -> not found in stable main" in result.stderr
    assert "+ lonely 1.0-1" in result.stdout


# ------------------------------------------------------------------ bad input changes nothing


def _break(kind: str, repo: Repo, keys: tuple[ArchiveKey, ArchiveKey], debs: dict[str, list[Path]]) -> None:
    suite = repo.suites["stable-updates"]
    if kind in ("deb-hash", "missing-pool-file"):
        write_repo(repo.root, {"stable": debs["stable"], "stable-updates": debs["stable-updates"] + debs["newer"]},
                   keys[0])
        pool = repo.root / "pool" / "main" / "h" / "hello" / "hello_1.2-1_amd64.deb"
        if kind == "deb-hash":
            data = bytearray(pool.read_bytes())
            data[-1] ^= 0xFF  # same size, other bytes
            pool.write_bytes(bytes(data))
        else:
            pool.unlink()
        return
    # The other breakages come with a real upstream change, so that a sync that trusted them would store something.
    write_repo(repo.root, {"stable": debs["stable"], "stable-updates": debs["stable-updates"] + debs["newer"]},
               keys[0])
    if kind == "bad-signature":
        path = repo.dist(suite.name) / "InRelease"
        path.write_bytes(path.read_bytes().replace(b"Label: Reservoir Tests", b"Label: Reservoir Pests"))
    elif kind == "unknown-signer":
        sign_suite(repo.root, suite, keys[1])
    elif kind == "packages-checksum":
        for path in (repo.dist(suite.name) / "main" / "binary-amd64").rglob("Packages*"):
            if path.is_file():
                path.write_bytes(path.read_bytes()[:-2] + b"\n\n")
        for path in (repo.dist(suite.name) / "main" / "binary-amd64" / "by-hash" / "SHA256").iterdir():
            path.write_bytes(path.read_bytes() + b"\n")
    elif kind in ("malformed-stanza", "hostile-filename", "absolute-filename"):
        text = repo.packages(suite.name).read_text()
        if kind == "malformed-stanza":
            text = text.replace("Priority: optional", "Priority optional", 1)
        elif kind == "hostile-filename":
            text = text.replace("Filename: pool/", "Filename: pool/../../", 1)
        else:
            text = text.replace("Filename: pool/", "Filename: /etc/", 1)
        shutil.rmtree(repo.dist(suite.name) / "main")
        write_index(repo.root, suite, text.encode())
        sign_suite(repo.root, suite, keys[0])


@pytest.mark.parametrize(("kind", "message"), [
    ("bad-signature", "bad signature"),
    ("unknown-signer", "not in the channel's keyrings"),
    ("packages-checksum", "where the Release says"),
    ("malformed-stanza", "not a field"),
    ("hostile-filename", "is not a relative path under pool/"),
    ("absolute-filename", "is not a relative path under pool/"),
])
def test_bad_upstream_index_refuses_the_sync_and_changes_nothing(
        kind: str, message: str, tmp_path: Path, served: RunningFolder, repo: Repo,
        keys: tuple[ArchiveKey, ArchiveKey], debs: dict[str, list[Path]]) -> None:
    home = tmp_path / "hub"
    make_hub(home, served.url, keys[0].public)
    assert invoke(home, "sync").exit_code == 0
    before = catalog(home)
    _break(kind, repo, keys, debs)
    result = invoke(home, "sync")
    assert result.exit_code != 0
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    after = catalog(home)
    assert {k: v for k, v in after.items() if k != "blobs"} == {k: v for k, v in before.items() if k != "blobs"}
    # Blobs are content-addressed and kept only once verified: the good suite's new InRelease and index may
    # stay (the next sync needs them); nothing the broken suite's signature or Release did not vouch for.
    allowed = {sha256_of(p) for p in repo.dist("stable").rglob("*") if p.is_file()}
    if kind not in ("bad-signature", "unknown-signer"):
        allowed.add(sha256_of(repo.dist("stable-updates") / "InRelease"))
    assert set(after["blobs"]) - set(before["blobs"]) <= allowed


@pytest.mark.parametrize(("kind", "message"), [
    ("deb-hash", "sha256 mismatch for hello_1.2-1_amd64.deb"),
    ("missing-pool-file", "hello_1.2-1_amd64.deb: file not found upstream"),
])
def test_a_bad_deb_is_never_stored_and_the_old_release_stays(
        kind: str, message: str, tmp_path: Path, served: RunningFolder, repo: Repo,
        keys: tuple[ArchiveKey, ArchiveKey], debs: dict[str, list[Path]]) -> None:
    home = tmp_path / "hub"
    make_hub(home, served.url, keys[0].public)
    assert invoke(home, "sync").exit_code == 0
    blobs_before = catalog(home)["blobs"]
    _break(kind, repo, keys, debs)
    result = invoke(home, "sync")
    assert result.exit_code == 1
    assert f"! hello 1.2-1: {message}" in result.stdout
    held = active(home)
    assert "hello==1.1-1" in held  # the mirror still installs hello
    assert [a.state for a in held["hello==1.2-1"].artifacts] == [ArtifactState.FAILED]
    pool = repo.root / "pool" / "main" / "h" / "hello" / "hello_1.2-1_amd64.deb"
    bad = sha256_of(pool) if pool.exists() else None
    blobs_after = catalog(home)["blobs"]
    assert bad not in blobs_after
    # Only the new verified indexes and InRelease came in: no .deb.
    new = set(blobs_after) - set(blobs_before)
    assert all(not (BlobStore(home / "blobs").path(b).read_bytes()[:8] == b"!<arch>\n") for b in new)


# ------------------------------------------------------------------ vetting and export


def test_deb_licenses_are_declared_through_the_ecosystem_hooks(tmp_path: Path, served: RunningFolder,
                                                               keys: tuple[ArchiveKey, ArchiveKey]) -> None:
    from licenses.policy import load_policy
    from licenses.vetter import Vetting, _declaration, load_releases

    home = tmp_path / "hub"
    make_hub(home, served.url, keys[0].public)
    assert invoke(home, "sync").exit_code == 0
    app = AppContext(home_root=home)
    vetting = Vetting(app.blobs, load_policy({}), app.home.tmp_dir)
    with app.db.transaction() as session:
        [hello] = [r for r in load_releases(session, list(session.scalars(select(Release.id))))
                   if r.name == "hello"]
        files = vetting.release_files(hello)
        assert [f.member for f in files] == ["usr/share/doc/hello/copyright"]
        declared = _declaration(hello, files)
        assert declared is not None and declared.spdx == "MIT" and declared.source == "debian/copyright"
    assert ecosystem("apt").declaration({}, []) is None


def test_debian_advisories_quarantine_a_synced_deb_in_debian_version_order(
        tmp_path: Path, served: RunningFolder, keys: tuple[ArchiveKey, ArchiveKey]) -> None:
    home = tmp_path / "hub"
    make_hub(home, served.url, keys[0].public)
    assert invoke(home, "sync").exit_code == 0
    record = {"id": "DSA-0001-1", "modified": "2025-01-01T00:00:00Z", "affected": [{
        "package": {"ecosystem": "Debian:12", "name": "hello"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1-1+deb12u1"}]}],
        "ecosystem_specific": {"urgency": "high"}}]}
    unaffected = {"id": "DSA-0002-1", "modified": "2025-01-01T00:00:00Z", "affected": [{
        "package": {"ecosystem": "Debian:12", "name": "libgreet1"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0-1~rc1"}]}],
        "ecosystem_specific": {"urgency": "high"}}]}
    folder = tmp_path / "osv"
    folder.mkdir()
    (folder / "DSA-0001-1.json").write_text(json.dumps(record))
    (folder / "DSA-0002-1.json").write_text(json.dumps(unaffected))
    result = invoke(home, "advisories", "import", str(folder))
    assert result.exit_code == 0, result.output
    held = active(home)
    assert held["hello==1.1-1"].gate.value == "quarantined"
    assert "DSA-0001-1" in held["hello==1.1-1"].gate_reason
    # In Debian's order `~` sorts before everything: 2.0-1~rc1 < 2.0-1 (a string order would say affected).
    assert held["libgreet1==2.0-1"].gate.value != "quarantined"


def test_export_carries_apt_releases_the_site_schema_accepts(tmp_path: Path, served: RunningFolder,
                                                             keys: tuple[ArchiveKey, ArchiveKey]) -> None:
    from transferer.schema import check_channels, check_release, installed_ecosystems

    home = tmp_path / "hub"
    make_hub(home, served.url, keys[0].public)
    assert invoke(home, "sync").exit_code == 0
    exported = invoke(home, "export", "--out", str(tmp_path / "out"))
    assert exported.exit_code == 0, exported.output
    bundle = Path(exported.stdout.strip().splitlines()[-1])
    manifest = json.loads((bundle / "manifest.json").read_text())
    channels = check_channels(manifest["channels"], installed_ecosystems())
    added = manifest["releases"]
    assert sorted(f"{r['name']}=={r['version']}" for r in added) == CLOSURE
    for i, record in enumerate(added):
        check_release(record, f"added[{i}]", channels)


# ------------------------------------------------------------------ the real upstream


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "file":
        return True
    try:
        with socket.create_connection((parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)),
                                      timeout=5):
            return True
    except OSError:
        return False


def _deb_cache() -> Path:
    """Outside the checkout, keyed by sha256: a rerun downloads only what the archive changed."""
    root = Path(os.environ.get("RESERVOIR_TEST_CACHE") or Path.home() / ".cache" / "reservoir-tests") / "debs"
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.mark.slow
def test_the_real_upstream_of_the_hosts_apt_sources(tmp_path: Path) -> None:
    for tool in ("gpgv", "gpg"):
        require_executable(tool)
    sources = [s for s in read_sources() if "deb" in s.types and s.uris and s.suites and s.signed_by]
    if not sources:
        if clients_required():
            pytest.fail("the host has no signed apt source (RESERVOIR_REQUIRE_CLIENTS=1)")
        pytest.skip("the host has no signed apt source")
    source = sources[0]
    if not _reachable(source.uris[0]):
        if clients_required():
            pytest.fail(f"{source.uris[0]} is not reachable (RESERVOIR_REQUIRE_CLIENTS=1)")
        pytest.skip(f"{source.uris[0]} is not reachable")
    home = tmp_path / "hub"
    assert invoke(home, "init", "--role", "hub").exit_code == 0
    cache = _deb_cache()
    blobs = BlobStore(home / "blobs")
    for cached in cache.iterdir():
        if len(cached.name) == 64:
            with blobs.writer(cached.name) as writer:  # verified again on the way in
                writer.write(cached.read_bytes())
                writer.commit()
    suite_args = [arg for suite in source.suites[:2] for arg in ("--suite", suite)]
    added = invoke(home, "channel", "add", "real", "--kind", "apt", *suite_args, "--component",
                   (source.components or ("main",))[0], "--package", "hello", "--package", "python3-yaml")
    assert added.exit_code == 0, added.output
    result = invoke(home, "sync")
    assert result.exit_code == 0, result.output + result.stderr
    held = active(home)
    names = {r.name for r in held.values()}
    assert {"hello", "python3-yaml", "libc6", "libyaml-0-2", "python3"} <= names
    for release in held.values():
        [deb] = release.artifacts
        assert deb.state == ArtifactState.STORED and blobs.has(deb.sha256)
        assert f"SHA256: {deb.sha256}" in release.meta["control"]
        target = cache / deb.sha256
        if not target.exists():
            shutil.copyfile(blobs.path(deb.sha256), target)
    again = invoke(home, "sync")
    assert again.exit_code == 0 and "downloaded 0 files" in again.stdout
