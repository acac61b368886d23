"""`reservoir channel add` + `reservoir sync` against real fixture indexes.

The upstream is a static index of wheels built with setuptools/pip (see
tests/support/wheels.py), read over file:// or served on 127.0.0.1 with
content negotiation and request counters (tests/support/pypi_index.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from reservoir.blobs import BlobStore
from reservoir.cli import cli
from reservoir.db import open_database
from reservoir.models import Artifact, ArtifactState, Release, ReleaseState, Snapshot, SyncRun
from tests.support.pypi_index import IndexTree, RunningIndex, serve_index, sha256_of, write_index
from tests.support.wheels import ProjectSpec, Tags, build_wheels

LINUX = "manylinux_2_28_x86_64"
WINDOWS = "win_amd64"

UNIVERSE = [
    ProjectSpec("alpha", "1.0", ["beta>=1.0"]),
    ProjectSpec(
        "alpha",
        "2.0",
        ["beta>=1.1", 'gamma>=1 ; python_version < "3.10"', "native>=1.0", 'epsilon ; sys_platform == "win32"'],
        extras={"fast": ["delta>=1"]},
    ),
    ProjectSpec("beta", "1.0"),
    ProjectSpec("beta", "1.1"),
    ProjectSpec("beta", "1.2"),  # yanked in the index
    ProjectSpec("gamma", "1.0"),
    ProjectSpec("delta", "1.0"),
    ProjectSpec("epsilon", "1.0"),
    ProjectSpec("native", "1.0", tags=Tags("cp311", "cp311", "manylinux_2_17_x86_64")),
    ProjectSpec("native", "1.0", tags=Tags("cp39", "cp39", "manylinux_2_17_x86_64")),
    ProjectSpec("native", "1.0", tags=Tags("cp311", "cp311", WINDOWS)),
    ProjectSpec("native", "1.0", tags=Tags("cp312", "cp312", "macosx_11_0_arm64")),
]
LATER = [ProjectSpec("beta", "1.3")]
YANKED = {"beta-1.2-py3-none-any.whl": "broken build"}


@pytest.fixture(autouse=True)
def no_installed_vetters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Syncs here do not run the installed vetters (license scans are slow and tested in their own
    suite); the vetting tests below install their own."""
    monkeypatch.setattr("hub.sync.vetters", lambda: [])


@pytest.fixture(scope="session")
def built_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every fixture wheel, built once per session: {filename: path}."""
    out = tmp_path_factory.mktemp("wheels")
    return {p.name: p for p in build_wheels(UNIVERSE + LATER, out)}


def universe(built: dict[str, Path]) -> list[Path]:
    return [p for name, p in built.items() if not name.startswith("beta-1.3")]


@pytest.fixture
def index_tree(tmp_path: Path, built_wheels: dict[str, Path]) -> IndexTree:
    return write_index(tmp_path / "upstream", universe(built_wheels), yanked=YANKED)


@pytest.fixture
def served(index_tree: IndexTree) -> Iterator[RunningIndex]:
    with serve_index(index_tree) as running:
        yield running


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def make_hub(home: Path, upstream: str, *options: str, env: dict[str, str] | None = None) -> None:
    assert invoke("--home", str(home), "init", "--role", "hub", env=env).exit_code == 0
    added = invoke("--home", str(home), "channel", "add", "main", "--kind", "pypi", "--upstream", upstream, *options,
                   env=env)
    assert added.exit_code == 0, added.output


def sync(home: Path, env: dict[str, str] | None = None) -> Result:
    return invoke("--home", str(home), "sync", env=env)


def db_url_of(home: Path, env: dict[str, str] | None = None) -> str:
    return (env or {}).get("RESERVOIR_DB_URL") or f"sqlite:///{home / 'reservoir.db'}"


def releases(home: Path, env: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """{"name==version": {filename: artifact state}} of active releases."""
    db = open_database(db_url_of(home, env))
    try:
        with db.transaction() as session:
            out: dict[str, dict[str, str]] = {}
            for release in session.scalars(select(Release).where(Release.state == ReleaseState.ACTIVE)):
                out[f"{release.name}=={release.version}"] = {a.filename: a.state.value for a in release.artifacts}
            return out
    finally:
        db.dispose()


def catalog_dump(home: Path) -> list[tuple[object, ...]]:
    """Everything a failed sync must leave unchanged."""
    db = open_database(db_url_of(home))
    try:
        with db.transaction() as session:
            rows: list[tuple[object, ...]] = [
                (r.name, r.version, r.state.value, r.gate.value, repr(sorted(r.meta.items())))
                for r in session.scalars(select(Release).order_by(Release.name, Release.version))
            ]
            rows += [
                (a.filename, a.sha256, a.state.value, a.error, repr(sorted(a.meta.items())))
                for a in session.scalars(select(Artifact).order_by(Artifact.filename))
            ]
            rows.append(("sync_runs", session.scalar(select(func.count()).select_from(SyncRun))))
            rows.append(("snapshots", session.scalar(select(func.count()).select_from(Snapshot))))
            return rows
    finally:
        db.dispose()


def one_error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# ------------------------------------------------------------------ selection


def test_closure_for_one_target_over_a_file_index(tmp_path: Path, built_wheels: dict[str, Path]) -> None:
    # HTML only, no PEP 658 files: dependencies come from METADATA inside the wheels.
    tree = write_index(tmp_path / "upstream", universe(built_wheels), json_pages=False, metadata=False, yanked=YANKED)
    home = tmp_path / "hub"
    make_hub(home, tree.file_url, "--package", "alpha", "--python", "3.11", "--platform", LINUX)
    result = sync(home)
    assert result.exit_code == 0, result.output
    assert releases(home) == {
        "alpha==2.0": {"alpha-2.0-py3-none-any.whl": "stored"},
        "beta==1.1": {"beta-1.1-py3-none-any.whl": "stored"},
        "native==1.0": {"native-1.0-cp311-cp311-manylinux_2_17_x86_64.whl": "stored"},
    }
    assert "+ alpha 2.0 (1 file," in result.stdout
    assert "3 added, 0 removed, 0 failed" in result.stdout


def test_artifacts_follow_the_catalog_contract(tmp_path: Path, index_tree: IndexTree) -> None:
    home = tmp_path / "hub"
    make_hub(home, index_tree.file_url, "--package", "beta==1.2", "--python", "3.11", "--platform", LINUX)
    assert sync(home).exit_code == 0
    blobs = BlobStore(home / "blobs")
    db = open_database(db_url_of(home))
    with db.transaction() as session:
        artifact = session.scalars(select(Artifact)).one()
        release = artifact.release
        assert (release.name, release.version, release.declared_license) == ("beta", "1.2", "MIT")
        assert release.meta["requires_dist"] == [] and release.meta["summary"].startswith("beta")
        assert artifact.sha256 == sha256_of(index_tree.files / artifact.filename)
        assert artifact.size == (index_tree.files / artifact.filename).stat().st_size
        assert artifact.meta["packagetype"] == "bdist_wheel"
        assert artifact.meta["yanked"] == "broken build"
        assert artifact.meta["upload_time"] == "2025-01-01T00:00:00.000000Z"
        metadata_blob = artifact.meta["aux_blobs"]["metadata"]
    db.dispose()
    assert blobs.verify(artifact.sha256)
    with zipfile.ZipFile(blobs.path(artifact.sha256)) as wheel:
        inside = wheel.read("beta-1.2.dist-info/METADATA")
    assert blobs.path(metadata_blob).read_bytes() == inside


def mirror_folder(home: Path, out: Path) -> Path:
    """The stored files under their upstream names, as a --find-links folder for pip."""
    blobs = BlobStore(home / "blobs")
    db = open_database(db_url_of(home))
    with db.transaction() as session:
        for artifact in session.scalars(select(Artifact).where(Artifact.state == ArtifactState.STORED)):
            blobs.link_into(artifact.sha256, out / artifact.filename)
    db.dispose()
    return out


def pip_download(folder: Path, requirement: str, python: str, platform: str, dest: Path) -> subprocess.CompletedProcess[str]:
    # pip's --platform takes exact tags; a real manylinux_2_28 host also accepts manylinux_2_17 wheels.
    platforms = [platform, "manylinux_2_17_x86_64"] if platform == LINUX else [platform]
    return subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "download", "--no-index", "--find-links", str(folder),
         "--only-binary=:all:", "--implementation", "cp", "--python-version", python,
         *[arg for p in platforms for arg in ("--platform", p)], "--dest", str(dest), requirement],
        capture_output=True, text=True,
    )


def test_closure_over_targets_and_extras_installs_offline_with_pip(tmp_path: Path, served: RunningIndex) -> None:
    home = tmp_path / "hub"
    make_hub(home, served.url, "--package", "alpha[fast]", "--python", "3.9", "--python", "3.11",
             "--platform", LINUX, "--platform", WINDOWS)
    result = sync(home)
    assert result.exit_code == 0, result.output
    held = releases(home)
    assert sorted(held) == ["alpha==2.0", "beta==1.1", "delta==1.0", "epsilon==1.0", "gamma==1.0", "native==1.0"]
    assert sorted(held["native==1.0"]) == [
        "native-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "native-1.0-cp311-cp311-win_amd64.whl",
        "native-1.0-cp39-cp39-manylinux_2_17_x86_64.whl",
    ]
    # No wheel was fetched twice (metadata came from the small wheels themselves).
    assert served.count("file") == 8
    folder = mirror_folder(home, tmp_path / "mirror")
    for python, platform in (("3.9", LINUX), ("3.11", LINUX), ("3.11", WINDOWS)):
        got = pip_download(folder, "alpha[fast]", python, platform, tmp_path / f"dl-{python}-{platform}")
        assert got.returncode == 0, got.stderr
    # ... and the mirror holds no more than the targets need: macOS got nothing.
    assert pip_download(folder, "native", "3.12", "macosx_11_0_arm64", tmp_path / "dl-mac").returncode != 0


def test_yanked_release_is_skipped_unless_pinned(tmp_path: Path, index_tree: IndexTree) -> None:
    free = tmp_path / "free"
    make_hub(free, index_tree.file_url, "--package", "beta", "--python", "3.11", "--platform", LINUX)
    assert sync(free).exit_code == 0
    assert list(releases(free)) == ["beta==1.1"]
    pinned = tmp_path / "pinned"
    make_hub(pinned, index_tree.file_url, "--package", "beta==1.2", "--python", "3.11", "--platform", LINUX)
    assert sync(pinned).exit_code == 0
    assert list(releases(pinned)) == ["beta==1.2"]


def test_latest_n_versions_of_a_requested_project(tmp_path: Path, index_tree: IndexTree) -> None:
    home = tmp_path / "hub"
    make_hub(home, index_tree.file_url, "--package", "beta", "--latest", "2", "--python", "3.11", "--platform", LINUX)
    assert sync(home).exit_code == 0
    assert sorted(releases(home)) == ["beta==1.0", "beta==1.1"]


def test_requires_python_of_files_is_honoured(tmp_path: Path, built_wheels: dict[str, Path]) -> None:
    tree = write_index(tmp_path / "upstream", universe(built_wheels),
                       requires_python={"beta-1.1-py3-none-any.whl": ">=3.10"}, yanked=YANKED)
    home = tmp_path / "hub"
    make_hub(home, tree.file_url, "--package", "beta", "--python", "3.9", "--python", "3.11", "--platform", LINUX)
    assert sync(home).exit_code == 0
    assert sorted(releases(home)) == ["beta==1.0", "beta==1.1"]


# ------------------------------------------------------------------ incremental


def test_resync_without_upstream_change_downloads_nothing(tmp_path: Path, db_url: str, served: RunningIndex,
                                                          built_wheels: dict[str, Path]) -> None:
    env = {"RESERVOIR_DB_URL": db_url}
    home = tmp_path / "hub"
    make_hub(home, served.url, "--package", "alpha", "--python", "3.11", "--platform", LINUX, env=env)
    first = sync(home, env)
    assert first.exit_code == 0, first.output
    assert served.count("file") == 3
    served.reset()
    again = sync(home, env)
    assert again.exit_code == 0, again.output
    assert "0 added, 0 removed, 0 failed; downloaded 0 files" in again.stdout
    assert served.count("file") == served.count("metadata") == served.count("page") == 0
    assert served.count("304") == 3

    # A new release upstream: only its file is fetched; the one it replaces is marked removed.
    write_index(served.tree.root, [built_wheels["beta-1.3-py3-none-any.whl"]], yanked=YANKED)
    served.reset()
    third = sync(home, env)
    assert third.exit_code == 0, third.output
    assert "+ beta 1.3 (1 file," in third.stdout and "- beta 1.1" in third.stdout
    assert served.count("file") == 1
    assert sorted(releases(home, env)) == ["alpha==2.0", "beta==1.3", "native==1.0"]
    db = open_database(db_url)
    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Snapshot)) == 3
        removed = session.scalars(select(Release).where(Release.state == ReleaseState.REMOVED)).one()
        assert (removed.name, removed.version) == ("beta", "1.1")
    db.dispose()


def test_resync_of_an_index_without_pep658_reads_no_wheel_again(tmp_path: Path, built_wheels: dict[str, Path]) -> None:
    tree = write_index(tmp_path / "upstream", universe(built_wheels), json_pages=False, metadata=False, yanked=YANKED)
    with serve_index(tree) as served:
        home = tmp_path / "hub"
        make_hub(home, served.url, "--package", "alpha", "--python", "3.11", "--platform", LINUX)
        assert sync(home).exit_code == 0
        assert served.count("file") == 3  # each wheel once, read for its metadata and kept
        served.reset()
        assert sync(home).exit_code == 0
        assert served.count("file") == 0


def test_sync_killed_midway_keeps_no_partial_state_and_resumes(tmp_path: Path, served: RunningIndex) -> None:
    home = tmp_path / "hub"
    make_hub(home, served.url, "--package", "alpha", "--python", "3.11", "--platform", LINUX)
    stalled = "native-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    others = ["alpha-2.0-py3-none-any.whl", "beta-1.1-py3-none-any.whl"]
    served.stall.add(stalled)
    before = catalog_dump(home)
    blobs = BlobStore(home / "blobs")
    proc = subprocess.Popen([sys.executable, "-m", "reservoir", "--home", str(home), "sync"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not all(blobs.has(sha256_of(served.tree.files / name)) for name in others):
            assert proc.poll() is None, "sync ended before it could be killed"
            assert time.monotonic() < deadline, "sync never stored the unstalled files"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    served.stall.clear()
    served.released.set()
    assert catalog_dump(home) == before
    assert all(blobs.verify(digest) for digest in blobs.iter_digests())
    assert not blobs.has(sha256_of(served.tree.files / stalled))

    served.reset()
    resumed = sync(home)
    assert resumed.exit_code == 0, resumed.output
    assert served.count("file") == 1  # only the file the killed run did not finish
    assert "3 added" in resumed.stdout
    assert all(state == "stored" for files in releases(home).values() for state in files.values())


def test_server_errors_are_retried(tmp_path: Path, served: RunningIndex) -> None:
    home = tmp_path / "hub"
    make_hub(home, served.url, "--package", "beta", "--python", "3.11", "--platform", LINUX)
    served.flaky["beta-1.1-py3-none-any.whl"] = 2
    result = sync(home)
    assert result.exit_code == 0, result.output
    assert served.count("file") == 3
    assert releases(home) == {"beta==1.1": {"beta-1.1-py3-none-any.whl": "stored"}}


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "json_pages",
    [
        pytest.param(True, id="read-while-selecting"),  # sizes known: small wheels are read for their metadata
        pytest.param(False, id="fetched-after-selecting"),  # HTML has no sizes: PEP 658 file, then the wheel
    ],
)
def test_hash_mismatch_discards_the_file_and_fails_the_release(tmp_path: Path, built_wheels: dict[str, Path],
                                                               json_pages: bool) -> None:
    tree = write_index(tmp_path / "upstream", universe(built_wheels), json_pages=json_pages, yanked=YANKED)
    with serve_index(tree) as served:
        home = tmp_path / "hub"
        make_hub(home, served.url, "--package", "alpha", "--python", "3.11", "--platform", LINUX)
        assert sync(home).exit_code == 0
        write_index(tree.root, [built_wheels["beta-1.3-py3-none-any.whl"]], json_pages=json_pages, yanked=YANKED)
        bad = tree.files / "beta-1.3-py3-none-any.whl"
        tampered = bytearray(bad.read_bytes())
        tampered[-1] ^= 0xFF  # same size, other bytes: only the sha256 can tell
        bad.write_bytes(bytes(tampered))
        served.reset()
        result = sync(home)
        assert served.count("file") == 1
    assert result.exit_code == 1
    assert "! beta 1.3: sha256 mismatch for beta-1.3-py3-none-any.whl" in result.stdout
    assert not BlobStore(home / "blobs").has(sha256_of(bad))
    held = releases(home)
    # The failed release is recorded as such; what was stored stays, beta 1.1 included.
    assert held["beta==1.3"] == {"beta-1.3-py3-none-any.whl": "failed"}
    assert held["beta==1.1"] == {"beta-1.1-py3-none-any.whl": "stored"}


def test_metadata_file_mismatch_fails_the_release(tmp_path: Path, built_wheels: dict[str, Path]) -> None:
    # HTML pages give no sizes, so the PEP 658 file is read (and checked) rather than the wheel.
    tree = write_index(tmp_path / "upstream", universe(built_wheels), json_pages=False, yanked=YANKED)
    metadata = tree.files / "beta-1.1-py3-none-any.whl.metadata"
    metadata.write_bytes(metadata.read_bytes().replace(b"Name: beta", b"Name: bet4"))
    home = tmp_path / "hub"
    make_hub(home, tree.file_url, "--package", "beta", "--python", "3.11", "--platform", LINUX)
    result = sync(home)
    assert result.exit_code == 1
    assert "! beta 1.1: sha256 mismatch for beta-1.1-py3-none-any.whl.metadata" in result.stdout
    assert releases(home) == {"beta==1.1": {"beta-1.1-py3-none-any.whl": "failed"}}


@pytest.mark.parametrize("kind", ["json", "html"])
def test_malformed_index_page_changes_nothing(tmp_path: Path, index_tree: IndexTree, kind: str) -> None:
    home = tmp_path / "hub"
    make_hub(home, index_tree.file_url, "--package", "alpha", "--python", "3.11", "--platform", LINUX)
    assert sync(home).exit_code == 0
    before = catalog_dump(home)
    if kind == "json":
        index_tree.page("beta", "json").write_text('{"files": [')
        cause = "invalid JSON"
    else:
        index_tree.page("beta", "json").unlink()
        index_tree.page("beta").write_text('<a href="../../files/beta-1.1-py3-none-any.whl#sha256=zz">x</a>')
        cause = "bad sha256"
    result = sync(home)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "project 'beta'" in line and "malformed index page" in line and cause in line
    assert catalog_dump(home) == before


def test_unsafe_filename_in_an_index_is_refused(tmp_path: Path, index_tree: IndexTree) -> None:
    index_tree.page("beta", "json").unlink()
    index_tree.page("beta").write_text(f'<a href="../../files/x.whl#sha256={"0" * 64}">../../evil-1.0-py3-none-any.whl</a>')
    home = tmp_path / "hub"
    make_hub(home, index_tree.file_url, "--package", "beta", "--python", "3.11", "--platform", LINUX)
    result = sync(home)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "project 'beta'" in line and "unsafe filename" in line
    assert releases(home) == {}


def test_invalid_requirement_is_refused_at_channel_add(tmp_path: Path, index_tree: IndexTree) -> None:
    home = tmp_path / "hub"
    assert invoke("--home", str(home), "init", "--role", "hub").exit_code == 0
    result = invoke("--home", str(home), "channel", "add", "main", "--kind", "pypi", "--upstream",
                    index_tree.file_url, "--package", "alpha>>1")
    assert result.exit_code == 2
    assert "invalid requirement 'alpha>>1'" in one_error_line(result)
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# pinned\nbeta==1.1\nalpha[fast\n")
    result = invoke("--home", str(home), "channel", "add", "main", "--kind", "pypi", "--upstream",
                    index_tree.file_url, "--requirements", str(reqs))
    assert result.exit_code == 2
    assert f"{reqs}:3" in one_error_line(result)
    assert "no channels" in invoke("--home", str(home), "channel", "ls").stdout


def test_unknown_project_names_it_and_changes_nothing(tmp_path: Path, index_tree: IndexTree) -> None:
    home = tmp_path / "hub"
    make_hub(home, index_tree.file_url, "--package", "beta", "--package", "no-such-thing",
             "--python", "3.11", "--platform", LINUX)
    before = catalog_dump(home)
    result = sync(home)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "project 'no-such-thing'" in line and "not found upstream" in line
    assert catalog_dump(home) == before


def test_missing_dependency_fails_only_the_release_that_needs_it(tmp_path: Path,
                                                                  built_wheels: dict[str, Path]) -> None:
    orphan = build_wheels([ProjectSpec("orphan", "1.0", ["missing-dep>=1"])], tmp_path / "dist")
    tree = write_index(tmp_path / "upstream", [*universe(built_wheels), *orphan], yanked=YANKED)
    home = tmp_path / "hub"
    make_hub(home, tree.file_url, "--package", "orphan", "--package", "beta", "--python", "3.11", "--platform", LINUX)
    result = sync(home)
    assert result.exit_code == 1
    assert "! orphan 1.0: requires 'missing-dep', not found upstream" in result.stdout
    assert "+ beta 1.1" in result.stdout
    assert releases(home) == {
        "beta==1.1": {"beta-1.1-py3-none-any.whl": "stored"},
        "orphan==1.0": {"orphan-1.0-py3-none-any.whl": "failed"},
    }


def test_unreachable_upstream_changes_nothing(tmp_path: Path, index_tree: IndexTree) -> None:
    home = tmp_path / "hub"
    with serve_index(index_tree) as running:
        make_hub(home, running.url, "--package", "beta", "--python", "3.11", "--platform", LINUX)
        assert sync(home).exit_code == 0
    before = catalog_dump(home)  # the server is gone now: its port refuses connections
    result = sync(home)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "project 'beta'" in line and "upstream unreachable" in line
    assert catalog_dump(home) == before


# ------------------------------------------------------------------ sdists and vetting


def test_sdist_only_project_is_mirrored_with_a_warning(tmp_path: Path, built_wheels: dict[str, Path]) -> None:
    built = build_wheels([ProjectSpec("srconly", "1.0", ["beta"], sdist=True)], tmp_path / "dist")
    sdist = next(p for p in built if p.name.endswith(".tar.gz"))
    tree = write_index(tmp_path / "upstream", [*universe(built_wheels), sdist], yanked=YANKED)
    home = tmp_path / "hub"
    make_hub(home, tree.file_url, "--package", "srconly", "--sdists", "--python", "3.11", "--platform", LINUX)
    result = sync(home)
    assert result.exit_code == 0, result.output
    assert releases(home) == {"srconly==1.0": {sdist.name: "stored"}}
    # setuptools writes Metadata-Version 2.1 here, so its Requires-Dist cannot be trusted (PEP 643).
    assert "srconly 1.0: only an sdist with dynamic dependencies" in result.stderr


def test_vetters_get_the_releases_a_sync_added(tmp_path: Path, index_tree: IndexTree,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def vet(app: object, release_ids: list[int]) -> None:
        db = open_database(db_url_of(tmp_path / "hub"))
        with db.transaction() as session:
            vetted = [session.get(Release, i) for i in release_ids]
            seen.append(sorted(r.name for r in vetted if r is not None))
            for release in vetted:
                assert release is not None
                release.meta = {**release.meta, "vetting": {"category": "test"}}
        db.dispose()

    monkeypatch.setattr("hub.sync.vetters", lambda: [vet])
    home = tmp_path / "hub"
    make_hub(home, index_tree.file_url, "--package", "alpha", "--python", "3.11", "--platform", LINUX)
    assert sync(home).exit_code == 0
    assert sync(home).exit_code == 0  # nothing new, nothing unvetted: no vetting
    assert seen == [["alpha", "beta", "native"]]


def test_a_failing_vetter_fails_the_sync_and_its_releases_are_vetted_next_time(
    tmp_path: Path, index_tree: IndexTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def broken(app: object, release_ids: list[int]) -> None:
        calls.append(len(release_ids))
        raise RuntimeError("scanner crashed")

    monkeypatch.setattr("hub.sync.vetters", lambda: [broken])
    home = tmp_path / "hub"
    make_hub(home, index_tree.file_url, "--package", "beta", "--python", "3.11", "--platform", LINUX)
    result = sync(home)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "channel 'main'" in line and "failed on 1 releases: scanner crashed" in line
    assert sync(home).exit_code == 1  # nothing new upstream, but beta 1.1 is still unvetted
    assert calls == [1, 1]
