"""Incremental publish: after any sequence of bundles, the tree equals a full rebuild's, byte for byte.

A seeded random sequence of bundles (new projects and versions, removals,
vetting changes, full re-base bundles) goes from a hub to a site; after each
import the served tree (every page and file reachable from `current`) and the
objects on disk are compared with a full rebuild of the same catalog into an
empty folder. Imports publish only what they changed (`rendered`), and what
a generation stopped using goes once its base generation is pruned.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

import restorer.importer as importer
import restorer.publish as publish
from reservoir.context import AppContext
from reservoir.models import Gate, Release
from restorer.importer import catch_up_publishing, import_bundle
from restorer.models import DirtyPage
from restorer.publish import publish_kind, publishers
from restorer.publish.layout import OBJECTS
from restorer.publish.pypi import PypiPublisher
from tests.support.bundles import Pair, add_to_hub, make_pair, served_projects
from transferer.export import export_bundle


def tiny_wheel(folder: Path, display: str, version: str) -> Path:
    """A minimal valid wheel: enough for the hub, the bundle schema and the publisher."""
    dist = display.replace("-", "_").replace(".", "_")
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    if not path.exists():
        with zipfile.ZipFile(path, "w") as archive:
            info = f"{dist}-{version}.dist-info"
            archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {display}\nVersion: {version}\n")
            archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            archive.writestr(f"{info}/RECORD", "")
    return path


def served_tree(root: Path) -> dict[str, bytes]:
    """Every page and package file a client can reach through `current`, by served path."""
    out: dict[str, bytes] = {}
    live = root / "current"
    for top in ("simple", "files"):
        for folder, dirs, files in os.walk(live / top, followlinks=True):
            for name in files:
                path = Path(folder) / name
                if path.exists():  # a leaf removed from the tree leaves a dangling link: a 404
                    out[str(path.relative_to(live))] = path.read_bytes()
    return out


def objects(root: Path) -> set[str]:
    return {p.name for p in (root / OBJECTS).iterdir() if not p.name.startswith(".")}


def full_rebuild(site: AppContext, into: Path) -> dict[str, bytes]:
    with site.db.session() as session:
        publish_kind(into, PypiPublisher(), session, site.blobs, None)
    return served_tree(into)


def hub_step(pair: Pair, rng: random.Random, wheels: Path, names: list[str], versions: dict[str, int]) -> None:
    """One random change on the hub: new projects or versions, removals, vetting changes."""
    for _ in range(rng.randint(1, 4)):
        name = rng.choice(names)
        versions[name] = versions.get(name, 0) + 1
        add_to_hub(pair.hub, tiny_wheel(wheels, name, f"1.{versions[name]}"), channel=rng.choice(["py", "py", "extra"]))
    with pair.hub.db.transaction() as s:
        releases = s.scalars(select(Release).order_by(Release.id)).all()
        for release in rng.sample(releases, min(len(releases), rng.randint(0, 2))):
            s.delete(release)
        remaining = [r for r in releases if r not in s.deleted]
        for release in rng.sample(remaining, min(len(remaining), rng.randint(0, 2))):
            release.gate = Gate.HELD if release.gate == Gate.ALLOWED else Gate.ALLOWED


@pytest.mark.parametrize("seed", [11, 1234])
def test_incremental_publish_equals_a_full_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    # Keep only the live generation, so what generations stopped using is collected at once.
    monkeypatch.setattr(publish, "KEEP_GENERATIONS", 1)
    monkeypatch.setattr(publish, "GRACE_S", 0.0)
    rng = random.Random(seed)
    pair = make_pair(tmp_path)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    names = [f"Proj-{i}" for i in range(10)] + ["Mixed_Case.Name", "zeta.plugin"]
    versions: dict[str, int] = {}
    root = pair.site.home.trees_dir / "pypi"
    incremental = 0
    fulls: list[bool] = []
    for step in range(8):
        hub_step(pair, rng, wheels, names, versions)
        full = step > 0 and rng.random() < 0.25
        bundle = export_bundle(pair.hub, pair.media, full=full).path
        assert bundle is not None
        import_bundle(pair.site, bundle)
        expected = full_rebuild(pair.site, tmp_path / f"full-{step}" / "pypi")
        assert served_tree(root) == expected, f"step {step} (full bundle: {full})"
        assert objects(root) == objects(tmp_path / f"full-{step}" / "pypi"), f"step {step}: objects left behind"
        assert sorted(os.listdir(root / "files")) == sorted(os.listdir(tmp_path / f"full-{step}" / "pypi" / "files"))
        incremental += not full
        fulls.append(full)
    assert incremental >= 4 and any(fulls), fulls
    assert served_projects(pair.site)
    pair.close()


def test_an_import_renders_only_the_projects_it_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = make_pair(tmp_path)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    add_to_hub(pair.hub, *(tiny_wheel(wheels, f"p{i}", "1.0") for i in range(30)))
    import_bundle(pair.site, export_bundle(pair.hub, pair.media).path)  # type: ignore[arg-type]
    calls: list[list[str]] = []
    real = PypiPublisher.render_leaves

    def spy(self, session, blobs, keys):  # type: ignore[no-untyped-def]
        calls.append(list(keys))
        return real(self, session, blobs, keys)

    monkeypatch.setattr(PypiPublisher, "render_leaves", spy)
    add_to_hub(pair.hub, tiny_wheel(wheels, "p3", "2.0"), tiny_wheel(wheels, "new-one", "1.0"))
    with pair.hub.db.transaction() as s:
        s.delete(s.scalars(select(Release).where(Release.name == "p7")).one())
    import_bundle(pair.site, export_bundle(pair.hub, pair.media).path)  # type: ignore[arg-type]
    assert calls == [["simple/new-one", "simple/p3", "simple/p7"]]
    live = pair.site.home.trees_dir / "pypi" / "current"
    assert "p7" not in served_projects(pair.site) and "new-one" in served_projects(pair.site)
    assert not (live / "simple" / "p7" / "index.json").exists()
    # The generation holds links to shared shards, not a copy of the site.
    assert sum(1 for _ in live.iterdir()) < 10
    pair.close()


def test_a_kill_between_import_and_publish_is_caught_up_incrementally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = make_pair(tmp_path)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    add_to_hub(pair.hub, *(tiny_wheel(wheels, f"p{i}", "1.0") for i in range(5)))
    import_bundle(pair.site, export_bundle(pair.hub, pair.media).path)  # type: ignore[arg-type]
    add_to_hub(pair.hub, tiny_wheel(wheels, "late", "1.0"))
    second = export_bundle(pair.hub, pair.media).path

    def killed(app, dirty):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt("killed before the publish")

    monkeypatch.setattr(importer, "publish_changes", killed)
    with pytest.raises(KeyboardInterrupt):
        import_bundle(pair.site, second)  # type: ignore[arg-type]
    assert "late" not in served_projects(pair.site)
    with pair.site.db.session() as s:
        assert [(d.kind, d.leaf) for d in s.scalars(select(DirtyPage))] == [("pypi", "simple/late")]
    monkeypatch.undo()
    [result] = catch_up_publishing(pair.site) or []
    assert (result.full, result.rendered) == (False, 1)
    assert "late" in served_projects(pair.site)
    with pair.site.db.session() as s:
        assert s.scalars(select(DirtyPage)).all() == []
    assert catch_up_publishing(pair.site) is None
    pair.close()


def test_dropped_files_outlive_the_grace_period_of_the_generations_that_name_them(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    add_to_hub(pair.hub, tiny_wheel(wheels, "keep", "1.0"), tiny_wheel(wheels, "gone", "1.0"))
    import_bundle(pair.site, export_bundle(pair.hub, pair.media).path)  # type: ignore[arg-type]
    root = pair.site.home.trees_dir / "pypi"
    old = root / "current"
    old_generation = os.readlink(old)
    gone_files = sorted(p.relative_to(root) for p in (root / "files").rglob("gone-*"))
    assert gone_files
    with pair.hub.db.transaction() as s:
        s.delete(s.scalars(select(Release).where(Release.name == "gone")).one())
    import_bundle(pair.site, export_bundle(pair.hub, pair.media).path)  # type: ignore[arg-type]
    assert "gone" not in served_projects(pair.site)
    # Within the grace period the old generation and the files its pages name are still there.
    assert (root / old_generation).is_dir()
    assert all((root / f).is_file() for f in gone_files)
    with pair.site.db.session() as session:
        publish_kind(root, PypiPublisher(), session, pair.site.blobs, set(), keep=1, grace_s=0.0)
    assert not (root / old_generation).exists()
    assert not any((root / f).exists() for f in gone_files)
    assert (root / "current" / "simple" / "keep" / "index.json").is_file()
    # The link a removed project leaves (a 404 meanwhile) goes with the next full rebuild.
    assert (root / "simple" / "gone").is_symlink()
    with pair.site.db.session() as session:
        publish_kind(root, PypiPublisher(), session, pair.site.blobs, None)
    assert not (root / "simple" / "gone").is_symlink() and (root / "simple" / "keep").is_symlink()
    pair.close()


def test_publishers_are_discovered_through_entry_points() -> None:
    kinds = [p.kind for p in publishers()]
    assert "pypi" in kinds and kinds == sorted(kinds)


def test_the_cli_publishes_changes_or_everything(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    add_to_hub(pair.hub, tiny_wheel(wheels, "one", "1.0"))
    import_bundle(pair.site, export_bundle(pair.hub, pair.media).path)  # type: ignore[arg-type]
    home = str(pair.site.home.root)
    pair.site.close()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reservoir", "--home", home, *args], capture_output=True, text=True, timeout=120)

    quiet = cli("publish")
    assert quiet.returncode == 0 and "nothing to publish" in quiet.stdout, quiet.stderr
    full = cli("publish", "--full")
    assert full.returncode == 0 and "published pypi: 1 leaves (whole)" in full.stdout, full.stderr
    pair.close()


def test_a_change_not_known_leaf_by_leaf_rebuilds_every_tree(tmp_path: Path) -> None:
    """The row restorer_0003 writes for a site killed before the table existed, and a full bundle's."""
    from restorer.importer import pending_leaves
    from restorer.models import ALL_LEAVES

    pair = make_pair(tmp_path)
    with pair.site.db.transaction() as s:
        s.add(DirtyPage(catalog=2, kind="pypi", leaf="simple/a"))
        s.add(DirtyPage(catalog=3, kind="pypi", leaf="simple/b"))
    with pair.site.db.session() as s:
        assert pending_leaves(s, 1, 3) == {"pypi": {"simple/a", "simple/b"}}
        assert pending_leaves(s, 2, 3) == {"pypi": {"simple/b"}}
    with pair.site.db.transaction() as s:
        s.add(DirtyPage(catalog=3, kind=ALL_LEAVES, leaf=ALL_LEAVES))
    with pair.site.db.session() as s:
        assert pending_leaves(s, 1, 3) == {p.kind: None for p in publishers()}
    pair.close()
