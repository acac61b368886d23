"""APT upstream trust: InRelease / Release.gpg verified by real gpgv, Packages checked against the Release.

The upstream is a repository the tests build with `dpkg-deb` and sign with a
throwaway gpg key (tests/support/apt_repo.py); nothing is trusted without a
signature (no `trusted=yes`).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from downloader.apt.adapter import AptAdapter, AptCaches
from downloader.apt.control import declared_license, license_files
from downloader.apt.options import parse_options
from downloader.apt.packages import IndexError_
from downloader.apt.release import (
    IndexChoice,
    IndexEntry,
    SignatureError,
    check_release,
    choose_index,
    open_index,
    parse_release,
    prepare_keyrings,
    verify_detached,
    verify_inrelease,
)
from downloader.apt.sources import SuiteSource
from downloader.fetch import Fetcher
from reservoir.blobs import BlobStore
from reservoir.errors import ConfigError, IntegrityError
from tests.support.apt_repo import Repo, ArchiveKey, archive_and_stranger, sign_suite, write_index, write_repo
from tests.support.clients import require_executable
from tests.support.debs import DebSpec, build_deb, build_fixture_suites

NOW = datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ArchiveKey, ArchiveKey]]:
    for tool in ("gpg", "gpgv", "dpkg-deb"):
        require_executable(tool)
    with archive_and_stranger(tmp_path_factory.mktemp("apt-keys")) as pair:
        yield pair


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory, keys: tuple[ArchiveKey, ArchiveKey]) -> dict[str, list[Path]]:
    return build_fixture_suites(tmp_path_factory.mktemp("apt-debs"))


@pytest.fixture
def repo(tmp_path: Path, keys: tuple[ArchiveKey, ArchiveKey], debs: dict[str, list[Path]]) -> Repo:
    return write_repo(tmp_path / "repo", debs, keys[0])


def rings(key: ArchiveKey, tmp: Path, armored: bool = False) -> list[Path]:
    return prepare_keyrings([str(key.armored if armored else key.public)], tmp)


# ------------------------------------------------------------------ signatures


def test_inrelease_verified_with_a_binary_or_an_armored_keyring(repo: Repo, keys: tuple[ArchiveKey, ArchiveKey],
                                                                tmp_path: Path) -> None:
    data = (repo.dist("stable") / "InRelease").read_bytes()
    for armored in (False, True):
        verified = verify_inrelease(data, rings(keys[0], tmp_path, armored), tmp_path)
        assert verified.signer == keys[0].fingerprint
        release = parse_release(verified.text)
        assert (release.suite, release.acquire_by_hash, release.components, release.architectures) == (
            "stable", True, ("main",), ("amd64",))
        assert "main/binary-amd64/Packages.xz" in release.files


def test_an_inline_signed_by_key_is_dearmored_for_gpgv(repo: Repo, keys: tuple[ArchiveKey, ArchiveKey],
                                                       tmp_path: Path) -> None:
    inline = prepare_keyrings([keys[0].armored.read_text()], tmp_path)
    verify_inrelease((repo.dist("stable") / "InRelease").read_bytes(), inline, tmp_path)


def test_release_and_detached_release_gpg(repo: Repo, keys: tuple[ArchiveKey, ArchiveKey], tmp_path: Path) -> None:
    dist = repo.dist("stable")
    verified = verify_detached((dist / "Release").read_bytes(), (dist / "Release.gpg").read_bytes(),
                               rings(keys[0], tmp_path), tmp_path)
    assert parse_release(verified.text).suite == "stable"
    with pytest.raises(SignatureError, match="bad signature"):
        verify_detached((dist / "Release").read_bytes() + b"Extra: field\n", (dist / "Release.gpg").read_bytes(),
                        rings(keys[0], tmp_path), tmp_path)


def test_a_changed_inrelease_is_refused_as_a_bad_signature(repo: Repo, keys: tuple[ArchiveKey, ArchiveKey],
                                                           tmp_path: Path) -> None:
    data = (repo.dist("stable") / "InRelease").read_bytes().replace(b"Suite: stable", b"Suite: stabl3")
    with pytest.raises(SignatureError, match="^InRelease: bad signature") as caught:
        verify_inrelease(data, rings(keys[0], tmp_path), tmp_path)
    assert "\n" not in str(caught.value)


def test_an_unknown_signer_is_refused(repo: Repo, keys: tuple[ArchiveKey, ArchiveKey], tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match="not in the channel's keyrings"):
        verify_inrelease((repo.dist("stable") / "InRelease").read_bytes(), rings(keys[1], tmp_path), tmp_path)


def test_text_outside_the_signed_message_is_refused(repo: Repo, keys: tuple[ArchiveKey, ArchiveKey], tmp_path: Path) -> None:
    data = (repo.dist("stable") / "InRelease").read_bytes()
    for bad in (b"Suite: evil\n" + data, data + data, (repo.dist("stable") / "Release").read_bytes()):
        with pytest.raises(SignatureError, match="not one clearsigned message"):
            verify_inrelease(bad, rings(keys[0], tmp_path), tmp_path)


def test_a_keyring_that_is_not_a_key_is_a_config_error(tmp_path: Path, keys: tuple[ArchiveKey, ArchiveKey]) -> None:
    bogus = tmp_path / "bogus.asc"
    bogus.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64 !!\n-----END PGP PUBLIC KEY BLOCK-----\n")
    with pytest.raises(ConfigError, match="bogus.asc: not an OpenPGP key"):
        prepare_keyrings([str(bogus)], tmp_path)
    with pytest.raises(ConfigError, match="cannot read keyring"):
        prepare_keyrings([str(tmp_path / "missing.gpg")], tmp_path)


# ------------------------------------------------------------------ Release fields


def test_expired_valid_until_is_refused_unless_allowed(tmp_path: Path, keys: tuple[ArchiveKey, ArchiveKey],
                                                       debs: dict[str, list[Path]]) -> None:
    repo = write_repo(tmp_path / "old", {"stable": debs["stable"]}, keys[0], valid_for=timedelta(days=-1))
    verified = verify_inrelease((repo.dist("stable") / "InRelease").read_bytes(), rings(keys[0], tmp_path), tmp_path)
    release = parse_release(verified.text)
    with pytest.raises(IntegrityError, match=r"expired on .* \(Valid-Until\)"):
        check_release(release, "stable", NOW)
    check_release(release, "stable", NOW, allow_expired=True)
    fresh = write_repo(tmp_path / "fresh", {"stable": debs["stable"]}, keys[0], valid_for=timedelta(days=7))
    check_release(parse_release((fresh.dist("stable") / "Release").read_bytes()), "stable", NOW)


def test_a_release_for_another_suite_is_refused(repo: Repo) -> None:
    release = parse_release((repo.dist("stable") / "Release").read_bytes())
    check_release(release, "stable", NOW)
    with pytest.raises(IntegrityError, match="is for suite 'stable', not 'stable-updates'"):
        check_release(release, "stable-updates", NOW)


@pytest.mark.parametrize("text, reason", [
    (b"Suite: x\n", "no SHA256 file list"),
    (b"Suite: x\nSHA256:\n " + b"a" * 64 + b" 10 ../../etc/passwd\n", "unsafe path"),
    (b"Suite: x\nSHA256:\n " + b"a" * 64 + b" 10 /etc/passwd\n", "unsafe path"),
    (b"Suite: x\nSHA256:\n nothex 10 main/Packages\n", "bad SHA256 line"),
    (b"Suite: x\n\nSuite: y\n", "more than one paragraph"),
    (b"Suite: x\nDate: someday\nSHA256:\n " + b"a" * 64 + b" 1 p\n", "Date is not a date"),
])
def test_a_malformed_release_is_refused(text: bytes, reason: str) -> None:
    with pytest.raises(IntegrityError, match=reason):
        parse_release(text)


def test_the_index_chosen_is_xz_by_hash_then_gz_then_plain(repo: Repo) -> None:
    release = parse_release((repo.dist("stable") / "Release").read_bytes())
    choice = choose_index(release, "main", "amd64")
    assert choice.compression == "xz" and choice.entry.path == "main/binary-amd64/Packages.xz"
    assert choice.fetch_path == f"main/binary-amd64/by-hash/SHA256/{choice.entry.sha256}"
    assert (repo.dist("stable") / choice.fetch_path).is_file()
    gz_only = {p: e for p, e in release.files.items() if not p.endswith(".xz")}
    no_hash = parse_release((repo.dist("stable") / "Release").read_bytes().replace(b"Acquire-By-Hash: yes\n", b""))
    assert choose_index(no_hash, "main", "amd64").fetch_path == "main/binary-amd64/Packages.xz"
    from dataclasses import replace
    assert choose_index(replace(release, files=gz_only), "main", "amd64").compression == "gz"
    with pytest.raises(ConfigError, match="no component 'contrib'"):
        choose_index(release, "contrib", "amd64")
    with pytest.raises(ConfigError, match="no architecture 'arm64'"):
        choose_index(release, "main", "arm64")


def test_packages_checked_against_the_release_before_it_is_read(repo: Repo) -> None:
    release = parse_release((repo.dist("stable") / "Release").read_bytes())
    choice = choose_index(release, "main", "amd64")
    data = (repo.dist("stable") / choice.fetch_path).read_bytes()
    assert b"Package: hello" in open_index(data, choice)
    with pytest.raises(IntegrityError, match="sha256 .* where the Release says"):
        open_index(data[:-1] + bytes([data[-1] ^ 1]), choice)
    with pytest.raises(IntegrityError, match="bytes where the Release says"):
        open_index(data + b"\0", choice)
    # A compressed file that matches its own entry but not the plain one is refused too.
    other = gzip.compress(b"Package: evil\n")
    forged = IndexChoice(IndexEntry("main/binary-amd64/Packages.gz", hashlib.sha256(other).hexdigest(), len(other)),
                         "main/binary-amd64/Packages.gz", "gz", choice.plain)
    with pytest.raises(IntegrityError):
        open_index(other, forged)


# ------------------------------------------------------------------ the adapter, end to end over file://


def adapter(repo: Repo, key: ArchiveKey, blobs: BlobStore, caches: AptCaches, scratch: Path,
            packages: tuple[str, ...] = ("hello",), **options: object) -> AptAdapter:
    sources = [SuiteSource(s, repo.url, (str(key.public),)) for s in repo.suites]
    opts = parse_options(list(repo.suites), ["main"], "amd64", list(packages), sources, **options)  # type: ignore[arg-type]
    return AptAdapter(opts, blobs, caches, Fetcher(), scratch)


async def _select(a: AptAdapter):  # noqa: ANN202
    async with Fetcher() as fetcher:
        a.fetcher = fetcher
        return await a.select()


def test_select_over_two_suites_then_again_without_fetching_any_index(repo: Repo, keys: tuple[ArchiveKey, ArchiveKey],
                                                                     tmp_path: Path) -> None:
    blobs, caches = BlobStore(tmp_path / "blobs"), AptCaches()
    first = adapter(repo, keys[0], blobs, caches, tmp_path)
    selection = asyncio.run(_select(first))
    assert selection.warnings == []
    assert sorted(selection.releases) == [
        "base-files-fixture==12-1", "greet-base==1.0-1", "greet-data==1.0-1", "hello==1.1-1", "less-fixture==3.0-1",
        "libgreet1==2.0-1", "python3-fixture==3.11-1", "tinymta==0.5-1"]
    hello = selection.releases["hello==1.1-1"]
    [deb] = hello.files
    assert deb.filename == "hello_1.1-1_amd64.deb" and deb.url.startswith(repo.url + "pool/main/h/hello/")
    assert hello.meta["suite"] == "stable-updates" and hello.meta["control"].startswith("Package: hello")
    assert selection.releases["libgreet1==2.0-1"].meta["multi_arch"] == "same"
    assert first.indexes_fetched == 2 and caches.changed and set(caches.suites) == {"stable", "stable-updates"}
    cursor = caches.cursor
    again = adapter(repo, keys[0], blobs, AptCaches.from_json(caches.to_json()), tmp_path)
    assert asyncio.run(_select(again)).snapshot() == selection.snapshot()
    assert again.indexes_fetched == 0 and not again.caches.changed and again.caches.cursor == cursor


def test_a_missing_inrelease_falls_back_to_release_and_release_gpg(repo: Repo, keys: tuple[ArchiveKey, ArchiveKey],
                                                                   tmp_path: Path) -> None:
    for suite in repo.suites:
        (repo.dist(suite) / "InRelease").unlink()
    selection = asyncio.run(_select(adapter(repo, keys[0], BlobStore(tmp_path / "b"), AptCaches(), tmp_path)))
    assert "hello==1.1-1" in selection.releases


def stored(blobs: BlobStore) -> set[Path]:
    return {p for p in blobs.root.rglob("*") if p.is_file() and ".tmp" not in p.parts}


@pytest.mark.parametrize("breakage, message", [
    ("bad-signature", "bad signature"),
    ("unknown-signer", "not in the channel's keyrings"),
    ("index-mismatch", "where the Release says"),
    ("hostile-filename", "is not a relative path under pool/"),
    ("malformed-stanza", "not a field"),
    ("expired", "Valid-Until"),
])
def test_bad_upstream_input_changes_nothing(repo: Repo, keys: tuple[ArchiveKey, ArchiveKey], tmp_path: Path,
                                            breakage: str, message: str) -> None:
    suite = repo.suites["stable-updates"]
    signer = keys[0]
    if breakage == "bad-signature":
        path = repo.dist(suite.name) / "InRelease"
        path.write_bytes(path.read_bytes().replace(b"Label: Reservoir Tests", b"Label: Reservoir Pests"))
    elif breakage == "unknown-signer":
        sign_suite(repo.root, suite, keys[1])
    elif breakage == "index-mismatch":
        for path in (repo.dist(suite.name) / "main" / "binary-amd64").rglob("*"):
            if path.is_file():
                path.write_bytes(path.read_bytes()[:-2] + b"\n\n")
    elif breakage in ("hostile-filename", "malformed-stanza"):
        text = repo.packages(suite.name).read_text()
        text = (text.replace("Filename: pool/", "Filename: pool/../../", 1) if breakage == "hostile-filename"
                else text.replace("Priority: optional", "Priority optional", 1))
        shutil.rmtree(repo.dist(suite.name) / "main")
        write_index(repo.root, suite, text.encode())
        sign_suite(repo.root, suite, signer)
    elif breakage == "expired":
        suite.valid_until = NOW - timedelta(hours=1)
        sign_suite(repo.root, suite, signer)
    blobs, caches = BlobStore(tmp_path / "blobs"), AptCaches()
    with pytest.raises((IntegrityError, IndexError_)) as caught:
        asyncio.run(_select(adapter(repo, keys[0], blobs, caches, tmp_path)))
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert caches.suites == {} and not caches.changed
    # Blobs are content-addressed and kept only once verified: the good suite's files, and the broken
    # suite's InRelease where its signature held; never anything its signature or its Release did not vouch for.
    allowed = {hashlib.sha256(p.read_bytes()).hexdigest() for p in repo.dist("stable").rglob("*") if p.is_file()}
    if breakage not in ("bad-signature", "unknown-signer"):
        allowed.add(hashlib.sha256((repo.dist(suite.name) / "InRelease").read_bytes()).hexdigest())
    assert {p.name for p in stored(blobs)} <= allowed


def test_a_deb_declares_its_license_through_its_dep5_copyright(debs: dict[str, list[Path]], tmp_path: Path) -> None:
    hello = next(p for p in debs["stable"] if p.name.startswith("hello_"))
    with hello.open("rb") as stream:
        [found] = license_files(hello.name, stream)
    assert found.member == "usr/share/doc/hello/copyright" and b"License: MIT" in found.data
    for compression in ("xz", "zstd", "gzip", "none"):
        gpl = build_deb(DebSpec("gpl-thing", "1.0-1", license="GPL-2+", compression=compression), tmp_path / compression)
        with gpl.open("rb") as stream:
            declared = declared_license(gpl.name, stream)
        assert declared is not None and declared.spdx == "GPL-2.0-or-later", compression
    not_a_deb = tmp_path / "x_1_amd64.deb"
    not_a_deb.write_bytes(b"!<arch>\ngarbage")
    with not_a_deb.open("rb") as stream:
        assert license_files(not_a_deb.name, stream) == []


def test_an_unchanged_inrelease_over_http_is_one_conditional_request_and_no_index(
        repo: Repo, keys: tuple[ArchiveKey, ArchiveKey], tmp_path: Path) -> None:
    from aiohttp import web

    asked: list[tuple[str, int]] = []

    async def log(request: web.Request, response: web.StreamResponse) -> None:
        # The final status: a file response picks 304 only as it is sent.
        asked.append((request.path, response.status))

    async def run() -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
        app = web.Application()
        app.on_response_prepare.append(log)
        app.router.add_static("/", repo.root)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            sources = [SuiteSource(s, f"http://127.0.0.1:{port}/", (str(keys[0].public),)) for s in repo.suites]
            options = parse_options(list(repo.suites), ["main"], "amd64", ["hello"], sources)
            blobs, caches = BlobStore(tmp_path / "blobs"), AptCaches()
            async with Fetcher() as fetcher:
                first = await AptAdapter(options, blobs, caches, fetcher, tmp_path).select()
            before = list(asked)
            asked.clear()
            async with Fetcher() as fetcher:
                again = AptAdapter(options, blobs, AptCaches.from_json(caches.to_json()), fetcher, tmp_path)
                second = await again.select()
            assert second.snapshot() == first.snapshot() and not again.caches.changed
            return before, list(asked), again.indexes_fetched
        finally:
            await runner.cleanup()

    first, second, fetched = asyncio.run(run())
    assert sorted(p for p, _ in first if "by-hash" in p) and all(s == 200 for _, s in first)
    assert sorted(second) == [("/dists/stable-updates/InRelease", 304), ("/dists/stable/InRelease", 304)]
    assert fetched == 0
