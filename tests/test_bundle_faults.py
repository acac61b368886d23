"""Bad bundles and faults during import: each refused clearly, nothing stored lost or half-changed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reservoir.context import AppContext
from reservoir.errors import IntegrityError
from reservoir.home import create_home
from reservoir.keys import add_trusted_key, create_signing_key, load_signing_key, public_pem
from restorer.importer import BundleIncomplete, import_bundle
from restorer.inbox import FAILED, REASON, scan_inbox
from tests.support.bundles import Pair, add_to_hub, imported_seqs, make_pair, release_count, served_projects, site_catalog
from tests.support.clients import missing
from tests.support.site import wheel_named
from transferer.export import export_bundle
from transferer.format import MANIFEST, SIGNATURE, TOC, BundleError


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    p = make_pair(tmp_path)
    yield p
    p.close()


def first_bundle(pair: Pair, site_wheels: dict[str, Path], chunk_size: int = 4 << 30) -> Path:
    add_to_hub(pair.hub, wheel_named(site_wheels, "alpha-1.0"), wheel_named(site_wheels, "beta"))
    path = export_bundle(pair.hub, pair.media, chunk_size=chunk_size).path
    assert path is not None
    return path


def assert_site_untouched(site: AppContext) -> None:
    assert imported_seqs(site) == []
    assert release_count(site) == 0
    assert served_projects(site) == []


def resign(bundle: Path, hub: AppContext, manifest: dict) -> None:  # type: ignore[type-arg]
    raw = json.dumps(manifest, indent=1, sort_keys=True).encode()
    (bundle / MANIFEST).write_bytes(raw)
    (bundle / SIGNATURE).write_bytes(load_signing_key(hub.home.keys_dir).sign(raw))


def test_a_flipped_byte_in_a_part_is_refused(pair: Pair, site_wheels: dict[str, Path]) -> None:
    bundle = first_bundle(pair, site_wheels)
    part = bundle / "payload.tar.000"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"corrupt|sha256 mismatch"):
        import_bundle(pair.site, bundle)
    assert_site_untouched(pair.site)
    inbox = pair.site.home.inbox_dir
    shutil.move(str(bundle), inbox / bundle.name)
    [result] = scan_inbox(pair.site, inbox, settle_s=0)
    assert result.status == "failed"
    reason = (inbox / FAILED / bundle.name / REASON).read_text()
    assert len(reason.strip().splitlines()) == 1 and bundle.name not in ("",)
    assert_site_untouched(pair.site)


def test_a_part_still_being_copied_waits_and_never_imports(pair: Pair, site_wheels: dict[str, Path]) -> None:
    bundle = first_bundle(pair, site_wheels)
    part = bundle / "payload.tar.000"
    whole = part.read_bytes()
    part.write_bytes(whole[: len(whole) // 3])
    with pytest.raises(BundleIncomplete, match=rf"part payload.tar.000 is still being copied \({len(whole) // 3} of {len(whole)} bytes\)"):
        import_bundle(pair.site, bundle, settle_s=3600)
    assert_site_untouched(pair.site)
    part.write_bytes(whole)  # the copy finishes
    assert import_bundle(pair.site, bundle).status == "imported"


def age(folder: Path, seconds: float) -> None:
    """Make every file in `folder` look last written `seconds` ago (a copy that ended then)."""
    then = time.time() - seconds
    for path in folder.iterdir():
        os.utime(path, (then, then))


def test_a_truncated_part_fails_once_settled(pair: Pair, site_wheels: dict[str, Path]) -> None:
    bundle = first_bundle(pair, site_wheels)
    part = bundle / "payload.tar.000"
    size = part.stat().st_size
    os.truncate(part, size - 1000)
    truncated = rf"part payload.tar.000 is truncated \({size - 1000} of {size} bytes\)"
    age(bundle, 60)
    with pytest.raises(BundleError, match=truncated):
        import_bundle(pair.site, bundle, settle_s=30)
    assert_site_untouched(pair.site)
    inbox = pair.site.home.inbox_dir
    shutil.move(str(bundle), inbox / bundle.name)
    age(inbox / bundle.name, 60)
    [result] = scan_inbox(pair.site, inbox, settle_s=30)
    assert result.status == "failed" and re.search(truncated, result.message)
    assert str(result).count(bundle.name) == 1
    assert re.search(truncated, (inbox / FAILED / bundle.name / REASON).read_text())
    assert_site_untouched(pair.site)


def test_watch_once_moves_a_settled_truncated_part_to_failed(pair: Pair, site_wheels: dict[str, Path]) -> None:
    bundle = first_bundle(pair, site_wheels)
    part = bundle / "payload.tar.000"
    size = part.stat().st_size
    os.truncate(part, size - 1000)
    inbox = pair.site.home.inbox_dir
    shutil.move(str(bundle), inbox / bundle.name)
    age(inbox / bundle.name, 3600)  # far past the default settle time: no sleeping
    result = subprocess.run(
        [sys.executable, "-m", "reservoir", "--home", str(pair.site.home.root), "watch", "--once"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert f"failed: {bundle.name}: part payload.tar.000 is truncated ({size - 1000} of {size} bytes)" in result.stdout
    assert (inbox / FAILED / bundle.name / REASON).is_file()
    assert_site_untouched(pair.site)


def test_a_missing_part_waits_in_the_inbox(pair: Pair, site_wheels: dict[str, Path]) -> None:
    bundle = first_bundle(pair, site_wheels, chunk_size=2048)
    parts = sorted(bundle.glob("payload.tar.*"))
    assert len(parts) >= 3
    held_back = parts[1].read_bytes()
    parts[1].unlink()
    inbox = pair.site.home.inbox_dir
    dropped = inbox / bundle.name
    shutil.copytree(bundle, dropped)
    [result] = scan_inbox(pair.site, inbox)
    assert result.status == "waiting" and f"{len(parts) - 1} of {len(parts)} parts present" in result.message
    assert dropped.is_dir()
    assert_site_untouched(pair.site)
    (dropped / parts[1].name).write_bytes(held_back)
    [result] = scan_inbox(pair.site, inbox)
    assert result.status == "imported"
    assert (inbox / "done" / bundle.name).is_dir()
    assert served_projects(pair.site) == ["alpha", "beta"]


def test_a_manifest_signed_by_an_untrusted_key_is_refused(tmp_path: Path, pair: Pair, site_wheels: dict[str, Path]) -> None:
    bundle = first_bundle(pair, site_wheels)
    stranger = create_home(tmp_path / "stranger", "site")
    other_key = create_signing_key(stranger.keys_dir / "hub")
    raw = (bundle / MANIFEST).read_bytes()
    (bundle / SIGNATURE).write_bytes(other_key.sign(raw))
    with pytest.raises(IntegrityError, match="not from a trusted hub key"):
        import_bundle(pair.site, bundle)
    assert_site_untouched(pair.site)


def test_a_site_trusting_another_hub_refuses_the_bundle(tmp_path: Path, site_wheels: dict[str, Path]) -> None:
    pair = make_pair(tmp_path / "a")
    other = create_home(tmp_path / "b", "site")
    add_trusted_key(other.keys_dir, public_pem(create_signing_key(tmp_path / "otherhub").public), "other.pub")
    bundle = first_bundle(pair, site_wheels)
    site = AppContext(home_root=other.root)
    result = subprocess.run(
        [sys.executable, "-m", "reservoir", "--home", str(other.root), "import", str(bundle)], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "signature is not from a trusted hub key" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert_site_untouched(site)
    site.close()
    pair.close()


@pytest.mark.parametrize("filename", ["../../etc/cron.d/evil", "/etc/passwd", "..", "a\\..\\b"])
def test_hostile_file_names_in_a_signed_manifest_are_refused(pair: Pair, site_wheels: dict[str, Path], filename: str) -> None:
    bundle = first_bundle(pair, site_wheels)
    manifest = json.loads((bundle / MANIFEST).read_bytes())
    manifest["releases"][0]["artifacts"][0]["filename"] = filename
    resign(bundle, pair.hub, manifest)
    with pytest.raises(BundleError, match="unsafe file name"):
        import_bundle(pair.site, bundle)
    assert_site_untouched(pair.site)


def test_a_tar_member_escaping_the_blob_folder_is_refused(pair: Pair, site_wheels: dict[str, Path], tmp_path: Path) -> None:
    bundle = first_bundle(pair, site_wheels)
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("../../../../tmp/reservoir-escape")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    data = payload.getvalue()
    for part in bundle.glob("payload.tar.*"):
        part.unlink()
    (bundle / "payload.tar.000").write_bytes(data)
    toc = json.dumps({"parts": [{"name": "payload.tar.000", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]}).encode()
    (bundle / TOC).write_bytes(toc)
    manifest = json.loads((bundle / MANIFEST).read_bytes())
    manifest["toc"] = {"sha256": hashlib.sha256(toc).hexdigest(), "size": len(toc)}
    resign(bundle, pair.hub, manifest)
    with pytest.raises(BundleError, match="is not a blob"):
        import_bundle(pair.site, bundle)
    assert not Path("/tmp/reservoir-escape").exists()
    assert_site_untouched(pair.site)


def test_a_toc_that_does_not_match_the_manifest_is_refused(pair: Pair, site_wheels: dict[str, Path]) -> None:
    bundle = first_bundle(pair, site_wheels)
    toc = json.loads((bundle / TOC).read_bytes())
    toc["parts"][0]["size"] += 1
    (bundle / TOC).write_text(json.dumps(toc))
    with pytest.raises(BundleError, match="does not match the signed manifest"):
        import_bundle(pair.site, bundle)
    assert_site_untouched(pair.site)


def test_kill_9_during_import_then_rerun_is_consistent(pair: Pair, tmp_path: Path) -> None:
    # Enough random blobs that the import is still running when the first one lands.
    from sqlalchemy import select

    from reservoir.models import Artifact, ArtifactState, Channel, Release

    with pair.hub.db.transaction() as s:
        channel = Channel(name="big", kind="pypi", upstream="file:///x", options={})
        s.add(channel)
        for i in range(40):
            sha = pair.hub.blobs.put_bytes(os.urandom(2 << 20))
            release = Release(channel=channel, name=f"big{i}", display_name=f"big{i}", version="1.0", meta={})
            release.artifacts.append(
                Artifact(filename=f"big{i}-1.0-py3-none-any.whl", sha256=sha, size=2 << 20, state=ArtifactState.STORED,
                         meta={"packagetype": "bdist_wheel"})
            )
            s.add(release)
    bundle = export_bundle(pair.hub, pair.media).path
    site_blobs = pair.site.home.blobs_dir
    process = subprocess.Popen(
        [sys.executable, "-m", "reservoir", "--home", str(pair.site.home.root), "import", str(bundle)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not list(site_blobs.glob("??/??/*")):
        assert process.poll() is None, "the import finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert imported_seqs(pair.site) == []
    assert release_count(pair.site) == 0
    assert served_projects(pair.site) == []
    assert all(pair.site.blobs.verify(p.name) for p in site_blobs.glob("??/??/*"))
    rerun = subprocess.run(
        [sys.executable, "-m", "reservoir", "--home", str(pair.site.home.root), "import", str(bundle)],
        capture_output=True, text=True,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert imported_seqs(pair.site) == [1] and release_count(pair.site) == 40
    assert len(served_projects(pair.site)) == 40
    with pair.site.db.session() as s:
        for artifact in s.scalars(select(Artifact)):
            assert pair.site.blobs.verify(artifact.sha256)


def test_a_full_disk_during_import_keeps_the_previous_tree(
    tmp_path: Path, site_wheels: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        missing(f"permission to mount a small tmpfs ({result.stderr.strip()})")
    try:
        pair = make_pair(tmp_path)
        # The site lives on the small filesystem.
        site_root = mount / "site"
        shutil.copytree(pair.site.home.root, site_root)
        pair.site.close()
        site = AppContext(home_root=site_root)
        add_to_hub(pair.hub, wheel_named(site_wheels, "alpha-1.0"), wheel_named(site_wheels, "beta"))
        import_bundle(site, export_bundle(pair.hub, pair.media).path)  # type: ignore[arg-type]
        tree_before = {p.relative_to(site_root): p.read_bytes() for p in (site_root / "trees" / "pypi" / "current").rglob("*") if p.is_file()}
        from reservoir.models import Artifact, ArtifactState, Channel, Release

        with pair.hub.db.transaction() as s:
            channel = Channel(name="huge", kind="pypi", upstream="file:///x", options={})
            s.add(channel)
            for i in range(3):
                sha = pair.hub.blobs.put_bytes(os.urandom(8 << 20))
                release = Release(channel=channel, name=f"huge{i}", display_name=f"huge{i}", version="1.0", meta={})
                release.artifacts.append(Artifact(filename=f"huge{i}-1.0.tar.gz", sha256=sha, size=8 << 20, state=ArtifactState.STORED, meta={}))
                s.add(release)
        big = export_bundle(pair.hub, pair.media).path
        assert big is not None
        result = subprocess.run(
            [sys.executable, "-m", "reservoir", "--home", str(site_root), "import", str(big)], capture_output=True, text=True
        )
        assert result.returncode != 0
        assert "space" in result.stderr or "disk full" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert imported_seqs(site) == [1]
        assert sorted(site_catalog(site)) == ["alpha==1.0", "beta==1.0"]
        tree_after = {p.relative_to(site_root): p.read_bytes() for p in (site_root / "trees" / "pypi" / "current").rglob("*") if p.is_file()}
        assert tree_after == tree_before
        # Past the free-space check, a write that hits ENOSPC is refused just as cleanly.
        import restorer.importer as importer

        monkeypatch.setattr(importer, "SPACE_MARGIN", -(1 << 40))
        with pytest.raises(Exception, match="disk full"):
            import_bundle(site, big)
        assert imported_seqs(site) == [1]
        assert {p.relative_to(site_root): p.read_bytes() for p in (site_root / "trees" / "pypi" / "current").rglob("*") if p.is_file()} == tree_before
        assert not list((site_root / "blobs" / ".tmp").iterdir())
        site.close()
        pair.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
