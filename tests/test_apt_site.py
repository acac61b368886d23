"""The site's APT publisher: signed Release files apt accepts, incremental indices, by-hash grace, keep, installability.

The catalog is filled directly from real `.deb`s (dpkg-deb), as an import
would; signatures are checked with the real gpgv, compressed indices with
apt's own decompressor (`apt-helper cat-file`), the tree is served by
`reservoir serve` and by a real nginx.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import shutil
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from reservoir.context import AppContext
from reservoir.models import Artifact, ArtifactState, Channel, Release, ReleaseState
from restorer.gpgkey import stop_agent
from restorer.importer import import_bundle
from restorer.nginx import NginxSite, render_nginx_config
from restorer.publish import publish_changes, publish_kind, publish_site, tree_root
from restorer.publish.apt import AptPublisher, leaf_key
from tests.support.apt_site import add_deb, apt_channel, site_app
from tests.support.bundles import make_pair
from tests.support.clients import require_executable
from tests.support.debs import DebSpec, build_deb, build_fixture_suites, have_dpkg_deb
from tests.support.site import free_port, run_server
from transferer.export import export_bundle
from transferer.format import MANIFEST, SIGNATURE, BundleError

pytestmark = pytest.mark.skipif(not have_dpkg_deb() or shutil.which("gpg") is None, reason="needs dpkg-deb and gpg")
CHANNEL = "fixture"
SUITES = ("stable", "stable-updates")


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return build_fixture_suites(tmp_path_factory.mktemp("debs"))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[AppContext]:
    app = site_app(tmp_path / "site")
    yield app
    stop_agent(app.home.keys_dir / "gnupg")
    app.close()


def fill(app: AppContext, debs: dict[str, list[Path]], **options: object) -> None:
    with app.db.transaction() as session:
        channel = apt_channel(session, CHANNEL, suites=list(SUITES), components=["main"], **options)
        for suite, paths in debs.items():
            for path in paths:
                add_deb(session, app.blobs, channel, path, suite)


def tree(app: AppContext) -> Path:
    return tree_root(app, "apt") / CHANNEL


def release_fields(text: str) -> tuple[dict[str, str], dict[str, dict[str, tuple[int, str]]]]:
    fields: dict[str, str] = {}
    lists: dict[str, dict[str, tuple[int, str]]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith(" "):
            digest, size, name = line.split()
            lists[current][name] = (int(size), digest)
        else:
            current, _, value = line.partition(":")
            fields[current] = value.strip()
            lists.setdefault(current, {})
    return fields, lists


def packages_in(app: AppContext, suite: str) -> list[tuple[str, str]]:
    text = (tree(app) / "dists" / suite / "main" / "binary-amd64" / "Packages").read_text()
    out = []
    for stanza in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if not line.startswith(" "))
        out.append((fields["Package"], fields["Version"]))
    return out


def test_release_lists_exactly_the_served_files_and_gpgv_accepts_both_signatures(site: AppContext,
                                                                                  debs: dict[str, list[Path]],
                                                                                  tmp_path: Path) -> None:
    fill(site, debs)
    publish_site(site)
    keyring = tree(site) / "key.gpg"
    for suite in SUITES:
        dist = tree(site) / "dists" / suite
        for args in (["InRelease"], ["Release.gpg", "Release"]):
            checked = subprocess.run(["gpgv", "--keyring", str(keyring), *args], cwd=dist, capture_output=True,
                                     text=True, timeout=60)
            assert checked.returncode == 0, checked.stderr
        text = (dist / "Release").read_text()
        assert text in (dist / "InRelease").read_text()
        assert "Hash: SHA512" in (dist / "InRelease").read_text()
        fields, lists = release_fields(text)
        assert fields["Suite"] == fields["Codename"] == suite
        assert fields["Date"].endswith(" UTC") and "Valid-Until" not in fields
        assert fields["Acquire-By-Hash"] == "yes"
        assert fields["Architectures"] == "amd64" and fields["Components"] == "main"
        names = set(lists["SHA256"])
        assert names == set(lists["MD5Sum"]) == {f"main/binary-amd64/Packages{ext}" for ext in ("", ".gz", ".xz")}
        for name in names:
            data = (dist / name).read_bytes()
            assert lists["SHA256"][name] == (len(data), hashlib.sha256(data).hexdigest())
            assert lists["MD5Sum"][name] == (len(data), hashlib.md5(data).hexdigest())
            by_hash = dist / Path(name).parent / "by-hash" / "SHA256" / hashlib.sha256(data).hexdigest()
            assert by_hash.read_bytes() == data
        plain = (dist / "main/binary-amd64/Packages").read_bytes()
        assert gzip.decompress((dist / "main/binary-amd64/Packages.gz").read_bytes()) == plain
        assert lzma.decompress((dist / "main/binary-amd64/Packages.xz").read_bytes()) == plain
    # Every pool file a stanza names is there, with the stanza's size and hash.
    for suite in SUITES:
        text = (tree(site) / "dists" / suite / "main/binary-amd64/Packages").read_text()
        for stanza in text.strip().split("\n\n"):
            fields = dict(line.split(": ", 1) for line in stanza.splitlines() if not line.startswith(" "))
            data = (tree(site) / fields["Filename"]).read_bytes()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (int(fields["Size"]), fields["SHA256"])
    public = subprocess.run(["gpg", "--homedir", str(site.home.keys_dir / "gnupg"), "--export"], capture_output=True,
                            check=True, timeout=60).stdout
    assert keyring.read_bytes() == public
    assert stat.S_IMODE((site.home.keys_dir / "gnupg").stat().st_mode) == 0o700


def fake_package(session: object, app: AppContext, channel: Channel, name: str, version: str, suite: str = "stable",
                 depends: str = "") -> None:
    """An index-only stand-in: a real stanza, a blob that is not a .deb (the publisher never opens it)."""
    data = f"{name} {version}".encode()
    sha = app.blobs.put_bytes(data)
    control = (f"Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: T <t@example.invalid>\n"
               + (f"Depends: {depends}\n" if depends else "")
               + f"Description: stand-in {name}\n Long text.\nFilename: pool/x/{name}.deb\nSize: 1\nSHA256: {sha}")
    release = Release(channel=channel, name=name, display_name=name, version=version,
                      meta={"architecture": "amd64", "suite": suite, "component": "main", "control": control,
                            "depends": depends or None, "essential": False})
    release.artifacts.append(Artifact(filename=f"{name}_{version}_amd64.deb", sha256=sha, size=len(data),
                                      state=ArtifactState.STORED, meta={"architecture": "amd64"}))
    session.add(release)  # type: ignore[attr-defined]


def test_release_origin_and_label_are_the_upstreams_unless_the_channel_names_its_own(
        site: AppContext, debs: dict[str, list[Path]], tmp_path: Path) -> None:
    with site.db.transaction() as session:
        channel = apt_channel(session, CHANNEL, suites=list(SUITES), components=["main"])
        add_deb(session, site.blobs, channel, debs["stable"][0], "stable",
                meta_changes={"origin": "Debian", "label": "Debian"})
        add_deb(session, site.blobs, channel, debs["stable-updates"][0], "stable-updates",
                meta_changes={"origin": "Debian", "label": "Debian\nSuite: forged"})  # not one line: not used
    publish_site(site)

    def origin_label(suite: str) -> tuple[str, str]:
        fields, _ = release_fields((tree(site) / "dists" / suite / "Release").read_text())
        return fields["Origin"], fields["Label"]

    assert origin_label("stable") == ("Debian", "Debian")  # a client's pins on o=Debian keep matching
    assert origin_label("stable-updates") == ("Debian", CHANNEL)
    assert "forged" not in (tree(site) / "dists/stable-updates/Release").read_text()
    with site.db.transaction() as session:
        channel = apt_channel(session, CHANNEL)
        channel.options = {**channel.options, "origin": "Site", "label": "Site mirror"}
    publish_site(site)
    assert origin_label("stable") == origin_label("stable-updates") == ("Site", "Site mirror")


def test_a_republish_recompresses_only_the_changed_chunks_and_equals_a_full_rebuild(site: AppContext,
                                                                                     tmp_path: Path) -> None:
    with site.db.transaction() as session:
        channel = apt_channel(session, CHANNEL, suites=["stable"], components=["main"])
        for i in range(600):
            fake_package(session, site, channel, f"pkg{i:04d}", "1.0-1")
    full = AptPublisher()
    full.bind(site)
    with site.db.session() as session:
        publish_kind(tree_root(site, "apt"), full, session, site.blobs, None)
    assert full.cache.compressed > 8  # every chunk, the first time
    with site.db.transaction() as session:
        channel = apt_channel(session, CHANNEL)
        fake_package(session, site, channel, "pkg0300", "2.0-1")
    again = AptPublisher()
    again.bind(site)
    with site.db.session() as session:
        result = publish_kind(tree_root(site, "apt"), again, session, site.blobs, [leaf_key(CHANNEL, "stable", "main")])
    assert result.rendered == 1 and not result.full
    assert again.cache.compressed == 1  # the chunk holding pkg0300
    binary = tree(site) / "dists/stable/main/binary-amd64"
    assert ("pkg0300", "2.0-1") in packages_in(site, "stable") and len(packages_in(site, "stable")) == 601
    # apt's own decompressor reads the assembled xz stream and the gzip members.
    for name in ("Packages.xz", "Packages.gz"):
        read = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(binary / name)], capture_output=True,
                              timeout=60, check=True).stdout
        assert read == (binary / "Packages").read_bytes()
    assert subprocess.run(["xz", "-t", str(binary / "Packages.xz")], timeout=60).returncode == 0
    # A full rebuild of the same catalog into an empty folder writes the same index bytes.
    other = AptPublisher()
    other.bind(site)
    other.root = tmp_path / "rebuild"
    with site.db.session() as session:
        publish_kind(tmp_path / "rebuild", other, session, site.blobs, None)
    for name in ("Packages", "Packages.gz", "Packages.xz"):
        rebuilt = tmp_path / "rebuild" / CHANNEL / "dists/stable/main/binary-amd64" / name
        assert rebuilt.read_bytes() == (binary / name).read_bytes()


def test_the_previous_generations_by_hash_files_stay_for_the_grace_period_then_go(site: AppContext,
                                                                                 debs: dict[str, list[Path]],
                                                                                 tmp_path: Path) -> None:
    fill(site, debs)
    publish_site(site)
    binary = tree(site) / "dists/stable/main/binary-amd64"
    old = {hashlib.sha256((binary / n).read_bytes()).hexdigest() for n in ("Packages", "Packages.gz", "Packages.xz")}
    old_release = (tree(site) / "dists/stable/Release").read_text()
    with site.db.transaction() as session:
        add_deb(session, site.blobs, apt_channel(session, CHANNEL),
                build_deb(DebSpec("extra-tool", "1.0-1"), tmp_path / "more"), "stable")
    publish_changes(site, {"apt": {leaf_key(CHANNEL, "stable", "main")}})
    by_hash = binary / "by-hash" / "SHA256"
    # A client holding the old InRelease still finds every index it names.
    _, lists = release_fields(old_release)
    for _size, digest in lists["SHA256"].values():
        assert (by_hash / digest).is_file()
    assert old <= {p.name for p in by_hash.iterdir()}
    # Once that generation is pruned (here at once: no grace, one generation kept), its indices go.
    for name in ("another-tool", "third-tool"):
        with site.db.transaction() as session:
            add_deb(session, site.blobs, apt_channel(session, CHANNEL),
                    build_deb(DebSpec(name, "1.0-1"), tmp_path / "more"), "stable")
        publisher = AptPublisher()
        publisher.bind(site)
        with site.db.session() as session:
            publish_kind(tree_root(site, "apt"), publisher, session, site.blobs,
                         [leaf_key(CHANNEL, "stable", "main")], keep=1, grace_s=0)
    left = {p.name for p in by_hash.iterdir()}
    assert not old & left
    live = {hashlib.sha256((binary / n).read_bytes()).hexdigest() for n in ("Packages", "Packages.gz", "Packages.xz")}
    assert live <= left


def test_keep_serves_the_newest_versions_of_each_package(site: AppContext, debs: dict[str, list[Path]],
                                                         tmp_path: Path) -> None:
    fill(site, debs, keep=1)
    with site.db.transaction() as session:
        add_deb(session, site.blobs, apt_channel(session, CHANNEL),
                build_deb(DebSpec("less-fixture", "3.1-1"), tmp_path / "newer"), "stable")
    publish_site(site)
    versions = [v for name, v in packages_in(site, "stable") if name == "less-fixture"]
    assert versions == ["3.1-1"]
    with site.db.transaction() as session:
        apt_channel(session, CHANNEL).options = {**apt_channel(session, CHANNEL).options, "keep": 0}
    publish_site(site)
    assert sorted(v for name, v in packages_in(site, "stable") if name == "less-fixture") == ["3.0-1", "3.1-1"]


def test_a_republish_reads_and_judges_only_what_changed(site: AppContext, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    import restorer.publish.apt as apt_publish
    from downloader.apt import installable

    with site.db.transaction() as session:
        channel = apt_channel(session, CHANNEL, suites=["stable"], components=["main"])
        for i in range(200):
            fake_package(session, site, channel, f"pkg{i:04d}", "1.0-1", depends="pkg0000" if i % 2 else "")
        fake_package(session, site, channel, "needy", "1.0-1", depends="later-lib (>= 1) | nosuch")
    publish_site(site)
    assert "needy 1.0-1 -> later-lib (>= 1) | nosuch -> none of them published" in caplog.text
    read: list[int] = []
    judged: list[str] = []
    entries, problem = apt_publish._entries, installable._problem
    monkeypatch.setattr(apt_publish, "_entries",
                        lambda session, channel, ids: read.extend([-1] if ids is None else ids)
                        or entries(session, channel, ids))
    monkeypatch.setattr(installable, "_problem",
                        lambda universe, record: judged.append(record.name) or problem(universe, record))
    import restorer.publish as orchestration

    looked: list[str] = []
    safe_join = orchestration.safe_join
    monkeypatch.setattr(orchestration, "safe_join", lambda root, *parts, **kw: looked.extend(
        p for p in parts if "/pool/" in p) or safe_join(root, *parts, **kw))
    leaf = {"apt": {leaf_key(CHANNEL, "stable", "main")}}

    def republish() -> str:
        read.clear()
        judged.clear()
        looked.clear()
        caplog.clear()
        publish_changes(site, leaf)
        return (tree(site) / "dists/stable/main/binary-amd64/Packages").read_text()

    # A new package: only its release is read; it and what names it are judged, nothing else.
    with site.db.transaction() as session:
        fake_package(session, site, apt_channel(session, CHANNEL), "later-lib", "1.0-1")
    text = republish()
    assert len(read) == 1 and sorted(judged) == ["later-lib", "needy"]
    assert len(looked) == 1 and "later-lib" in looked[0]  # the pool files the live tree has are not looked at
    assert "needy" not in caplog.text and "Package: later-lib" in text
    # A release changed in place (its meta) is read again.
    with site.db.transaction() as session:
        release = session.scalars(select(Release).where(Release.name == "pkg0007")).one()
        release.meta = {**release.meta, "control": release.meta["control"].replace("stand-in", "changed")}
    text = republish()
    assert len(read) == 1 and "Description: changed pkg0007" in text
    # A package that leaves: what depended on it is judged again and reported.
    with site.db.transaction() as session:
        session.scalars(select(Release).where(Release.name == "pkg0000")).one().state = ReleaseState.REMOVED
    text = republish()
    assert read == [] and "Package: pkg0000\n" not in text
    assert len(judged) == 100 and "pkg0001 1.0-1 -> pkg0000 -> not found" in caplog.text
    # The republished bytes are a full rebuild's.
    full = tmp_path / "rebuild"
    other = AptPublisher()
    other.bind(site)
    other.root = full
    with site.db.session() as session:
        publish_kind(full, other, session, site.blobs, None)
    for name in ("Packages", "Packages.gz", "Packages.xz"):
        assert ((full / CHANNEL / "dists/stable/main/binary-amd64" / name).read_bytes()
                == (tree(site) / "dists/stable/main/binary-amd64" / name).read_bytes())


def test_a_package_apt_could_not_install_is_reported_and_held_back_when_asked(site: AppContext,
                                                                             debs: dict[str, list[Path]],
                                                                             tmp_path: Path,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    fill(site, debs)
    with site.db.transaction() as session:
        channel = apt_channel(session, CHANNEL)
        add_deb(session, site.blobs, channel, build_deb(DebSpec("broken", "1.0-1", depends="nosuch-lib (>= 2)"),
                                                        tmp_path / "b"), "stable")
        add_deb(session, site.blobs, channel, build_deb(DebSpec("uses-broken", "1.0-1", depends="broken"),
                                                        tmp_path / "b"), "stable")
    publish_site(site)
    assert "broken 1.0-1 -> nosuch-lib (>= 2) -> not found" in caplog.text
    assert ("broken", "1.0-1") in packages_in(site, "stable")
    with site.db.transaction() as session:
        channel = apt_channel(session, CHANNEL)
        channel.options = {**channel.options, "hold_uninstallable": True}
    caplog.clear()
    publish_site(site)
    served = {name for name, _ in packages_in(site, "stable")}
    assert "broken" not in served and "uses-broken" not in served
    assert "held back" in caplog.text and "uses-broken 1.0-1 -> broken" in caplog.text
    # What the fixture archive needs across its two suites is all there: nothing else held back.
    assert {"hello", "libgreet1", "greet-plugin", "tinymta"} <= served | {n for n, _ in packages_in(site, "stable-updates")}


def test_a_stanza_that_is_not_its_packages_own_is_not_served(site: AppContext, debs: dict[str, list[Path]],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    fill(site, debs)
    with site.db.transaction() as session:
        hello = session.scalars(select(Release).where(Release.name == "tinymta")).one()
        control = hello.meta["control"]
        hello.meta = {**hello.meta, "control": control + "\n\nPackage: evil\nVersion: 1\nFilename: ../../etc/passwd"}
        less = session.scalars(select(Release).where(Release.name == "less-fixture")).one()
        less.meta = {**less.meta, "control": less.meta["control"].replace("Package: less-fixture", "Package: libc6")}
    publish_site(site)
    served = {name for name, _ in packages_in(site, "stable")}
    assert "tinymta" not in served and "evil" not in served and "less-fixture" not in served and "libc6" not in served
    assert "hello" in served
    assert "stanza line" in caplog.text and "says Package 'libc6', not 'less-fixture'" in caplog.text
    text = (tree(site) / "dists/stable/main/binary-amd64/Packages").read_text()
    assert "../" not in text


HOSTILE = {
    "upstream Filename going up": (lambda r: r["artifacts"][0]["meta"].update(upstream_path="../../../etc/passwd"),
                                   "upstream_path"),
    "absolute upstream Filename": (lambda r: r["artifacts"][0]["meta"].update(upstream_path="/etc/passwd"),
                                   "upstream_path"),
    "file name with a slash": (lambda r: r["artifacts"][0].update(filename="../hello_1.1-1_amd64.deb"), "filename"),
    "name going up": (lambda r: r.update(name="../evil"), "name"),
    "suite going up": (lambda r: r["meta"].update(suite="../../x"), "suite"),
    "absolute component": (lambda r: r["meta"].update(component="/etc"), "component"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_bundle_naming_a_hostile_apt_path_is_refused_and_nothing_changes(tmp_path: Path,
                                                                           debs: dict[str, list[Path]],
                                                                           case: str) -> None:
    from reservoir.keys import load_signing_key

    pair = make_pair(tmp_path / "homes")
    try:
        with pair.hub.db.transaction() as session:
            channel = Channel(name=CHANNEL, kind="apt", upstream="", options={"arch": "amd64", "suites": ["stable"]})
            session.add(channel)
            session.flush()
            hello = next(p for p in debs["stable-updates"] if p.name.startswith("hello_"))
            add_deb(session, pair.hub.blobs, channel, hello, "stable")
        bundle = export_bundle(pair.hub, pair.media).path
        assert bundle is not None
        manifest = json.loads((bundle / MANIFEST).read_bytes())
        mutate, where = HOSTILE[case]
        mutate(manifest["releases"][0])
        raw = json.dumps(manifest, indent=1, sort_keys=True).encode()
        (bundle / MANIFEST).write_bytes(raw)
        (bundle / SIGNATURE).write_bytes(load_signing_key(pair.hub.home.keys_dir).sign(raw))
        with pytest.raises(BundleError, match=where) as refused:
            import_bundle(pair.site, bundle)
        assert len(str(refused.value).splitlines()) == 1
        with pair.site.db.session() as session:
            assert session.scalars(select(Release)).all() == []
        assert not (pair.site.home.trees_dir / "apt").exists()
    finally:
        stop_agent(pair.site.home.keys_dir / "gnupg")
        pair.close()


def test_apt_sources_prints_the_deb822_stanza(site: AppContext, debs: dict[str, list[Path]]) -> None:
    fill(site, debs)
    publish_site(site)

    def sources(*extra: str) -> str:
        return subprocess.run([sys.executable, "-m", "reservoir", "--home", str(site.home_root), "apt", "sources",
                               CHANNEL, "--url", "http://127.0.0.1:8080/", *extra],
                              capture_output=True, text=True, timeout=60, check=True).stdout

    inline = sources()
    lines = inline.splitlines()
    assert lines[:5] == ["Types: deb", f"URIs: http://127.0.0.1:8080/apt/{CHANNEL}/",
                         "Suites: stable stable-updates", "Components: main", "Architectures: amd64"]
    assert lines[5] == "Signed-By: -----BEGIN PGP PUBLIC KEY BLOCK-----"
    assert lines[6] == " ." and lines[-1] == " -----END PGP PUBLIC KEY BLOCK-----"
    assert all(line.startswith(" ") for line in lines[6:])
    with_file = sources("--key-file", "/etc/apt/keyrings/site.gpg")
    assert with_file.splitlines()[-1] == "Signed-By: /etc/apt/keyrings/site.gpg"
    unknown = subprocess.run([sys.executable, "-m", "reservoir", "--home", str(site.home_root), "apt", "sources",
                              "nosuch"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode != 0 and len(unknown.stderr.strip().splitlines()) == 1
    assert "no APT channel 'nosuch'" in unknown.stderr


def test_init_site_makes_the_openpgp_key(tmp_path: Path) -> None:
    home = tmp_path / "s"
    done = subprocess.run([sys.executable, "-m", "reservoir", "--home", str(home), "init", "--role", "site"],
                          capture_output=True, text=True, timeout=120, check=True)
    gnupg = home / "keys" / "gnupg"
    try:
        assert "site OpenPGP key" in done.stdout
        assert stat.S_IMODE(gnupg.stat().st_mode) == 0o700
        listing = subprocess.run(["gpg", "--homedir", str(gnupg), "--with-colons", "--list-secret-keys"],
                                 capture_output=True, text=True, timeout=60, check=True).stdout
        assert sum(line.startswith("sec:") for line in listing.splitlines()) == 1
        assert ":22:ed25519:" in listing or ":ed25519:" in listing
        # `init` leaves no gpg-agent behind (the listing above started one: stop it, then look).
        stop_agent(gnupg)
        subprocess.run([sys.executable, "-m", "reservoir", "--home", str(tmp_path / "t"), "init", "--role", "site"],
                       capture_output=True, text=True, timeout=120, check=True)
        agents = subprocess.run(["pgrep", "-f", f"gpg-agent --homedir {tmp_path / 't'}"], capture_output=True,
                                text=True, timeout=30).stdout
        assert agents == ""
    finally:
        stop_agent(tmp_path / "t" / "keys" / "gnupg")
        stop_agent(gnupg)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def check_serving(base: str, site: AppContext) -> None:
    status, headers, body = get(f"{base}/apt/{CHANNEL}/dists/stable/InRelease")
    assert status == 200 and body == (tree(site) / "dists/stable/InRelease").read_bytes()
    assert "immutable" not in headers.get("Cache-Control", "")
    status, _, _ = get(f"{base}/apt/{CHANNEL}/dists/stable/InRelease", {"If-Modified-Since": headers["Last-Modified"]})
    assert status == 304
    xz = (tree(site) / "dists/stable/main/binary-amd64/Packages.xz").read_bytes()
    digest = hashlib.sha256(xz).hexdigest()
    status, headers, body = get(f"{base}/apt/{CHANNEL}/dists/stable/main/binary-amd64/by-hash/SHA256/{digest}")
    assert status == 200 and body == xz and "immutable" in headers["Cache-Control"]
    status, _, body = get(f"{base}/apt/{CHANNEL}/dists/stable/main/binary-amd64/Packages.xz", {"Range": "bytes=10-"})
    assert status == 206 and body == xz[10:]
    status, _, body = get(f"{base}/apt/{CHANNEL}/key.gpg")
    assert status == 200 and body == (tree(site) / "key.gpg").read_bytes()
    generation = os.readlink(tree_root(site, "apt") / "current")
    for path in ("/apt/current/generation.json", f"/apt/{generation}/generation.json", "/apt/.objects/",
                 f"/apt/{CHANNEL}/../current/generation.json", f"/apt/{CHANNEL}/dists/stable/%2e%2e/Release",
                 "/apt/.apt-chunks/", f"/apt/{CHANNEL}/nosuch"):
        assert get(base + path)[0] in (400, 403, 404), path


def test_reservoir_serve_serves_the_apt_tree(site: AppContext, debs: dict[str, list[Path]]) -> None:
    fill(site, debs)
    publish_site(site)
    with run_server(site.home_root) as server:
        check_serving(server.url, site)


def test_nginx_serves_the_apt_tree_alike(site: AppContext, debs: dict[str, list[Path]], tmp_path: Path) -> None:
    binary = require_executable("nginx")
    fill(site, debs)
    publish_site(site)
    port = free_port()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(render_nginx_config(NginxSite(site.home.trees_dir, f"127.0.0.1:{port}", None), standalone=True,
                                        prefix=prefix, user="root"))
    process = subprocess.Popen([binary, "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"],
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if get(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        check_serving(f"http://127.0.0.1:{port}", site)
    finally:
        process.terminate()
        process.wait(timeout=10)
