"""An export after a small change reads and sends only that change.

The hub here is built directly in its database (releases with stored blobs,
as after a sync), so the catalog can be large enough for "the whole catalog"
and "the change" to differ by orders of magnitude. What an export loaded is
counted by SQLAlchemy's `load` event on Release, independent of the
exporter's own counter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import event, select

from hub.channels import remove_channel
from reservoir.context import AppContext
from reservoir.home import create_home
from reservoir.keys import create_signing_key
from reservoir.models import Artifact, ArtifactState, Channel, Gate, Release, ReleaseState
from transferer.export import ExportResult, export_bundle
from transferer.format import MANIFEST
from transferer.models import SiteBlob, SiteRelease

SIZE = 300


@dataclass
class Loads:
    releases: list[str] = field(default_factory=list)


@pytest.fixture
def loads() -> Iterator[Loads]:
    seen = Loads()

    def on_load(release: Release, _context: object) -> None:
        seen.releases.append(release.name)

    event.listen(Release, "load", on_load)
    try:
        yield seen
    finally:
        event.remove(Release, "load", on_load)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[AppContext]:
    home = create_home(tmp_path / "hub", "hub")
    create_signing_key(home.keys_dir)
    app = AppContext(home_root=tmp_path / "hub")
    with app.db.transaction() as session:
        channel = Channel(name="main", kind="pypi", upstream="file:///upstream", options={})
        session.add(channel)
        for i in range(SIZE):
            add_release(app, session, channel, f"pkg{i}")
    yield app
    app.close()


def add_release(app: AppContext, session: object, channel: Channel, name: str, version: str = "1.0") -> Release:
    data = f"{name}-{version}".encode()
    release = Release(channel=channel, name=name, display_name=name, version=version, meta={})
    release.artifacts.append(Artifact(filename=f"{name}-{version}-py3-none-any.whl", sha256=app.blobs.put_bytes(data),
                                      size=len(data), state=ArtifactState.STORED,
                                      meta={"packagetype": "bdist_wheel"}))
    session.add(release)  # type: ignore[attr-defined]
    return release


def manifest(result: ExportResult) -> dict[str, object]:
    assert result.path is not None
    return dict(json.loads((result.path / MANIFEST).read_bytes()))


def names(data: dict[str, object], field_name: str) -> list[str]:
    return sorted(r["name"] for r in data[field_name])  # type: ignore[index, union-attr]


def export(app: AppContext, tmp_path: Path, loads: Loads, *, full: bool = False) -> ExportResult:
    loads.releases.clear()
    return export_bundle(app, tmp_path / "media", full=full)


def release_named(session: object, name: str) -> Release:
    return session.scalars(select(Release).where(Release.name == name)).one()  # type: ignore[attr-defined]


def test_an_export_after_one_new_release_reads_only_it(hub: AppContext, tmp_path: Path, loads: Loads) -> None:
    first = export(hub, tmp_path, loads)
    assert (first.base, first.releases, first.blobs) == (0, SIZE, SIZE) and len(loads.releases) == SIZE

    with hub.db.transaction() as session:
        add_release(hub, session, session.scalars(select(Channel)).one(), "newcomer")
    second = export(hub, tmp_path, loads)
    assert (second.base, second.releases, second.removed, second.blobs) == (first.seq, 1, 0, 1)
    assert loads.releases == ["newcomer"] and second.examined == 1
    data = manifest(second)
    assert names(data, "releases") == ["newcomer"] and len(data["blobs"]) == 1  # type: ignore[arg-type]

    loads.releases.clear()
    nothing = export(hub, tmp_path, loads)
    assert nothing.path is None and loads.releases == [] and nothing.examined == 0


def test_removals_and_vetting_changes_travel(hub: AppContext, tmp_path: Path, loads: Loads) -> None:
    export(hub, tmp_path, loads)
    with hub.db.transaction() as session:
        release_named(session, "pkg1").state = ReleaseState.REMOVED
        release_named(session, "pkg2").gate = Gate.DENIED
        pkg3 = release_named(session, "pkg3")
        pkg3.meta = {**pkg3.meta, "vetting": {"license": "approved by the admin"}}
    result = export(hub, tmp_path, loads)
    data = manifest(result)
    assert names(data, "removed") == ["pkg1", "pkg2"]
    assert names(data, "releases") == ["pkg3"] and data["blobs"] == []  # the site has pkg3's file already
    assert sorted(loads.releases) == ["pkg1", "pkg2", "pkg3"]

    with hub.db.transaction() as session:
        release_named(session, "pkg2").gate = Gate.ALLOWED
    back = manifest(export(hub, tmp_path, loads))
    assert names(back, "releases") == ["pkg2"] and len(back["blobs"]) == 1  # type: ignore[arg-type]
    assert loads.releases == ["pkg2"]


def test_a_removed_channel_takes_its_releases_from_the_site(hub: AppContext, tmp_path: Path, loads: Loads) -> None:
    with hub.db.transaction() as session:
        other = Channel(name="other", kind="pypi", upstream="file:///other", options={})
        session.add(other)
        add_release(hub, session, other, "lonely")
    export(hub, tmp_path, loads)
    with hub.db.transaction() as session:
        remove_channel(session, "other")
    data = manifest(export(hub, tmp_path, loads))
    assert data["removed"] == [{"channel": "other", "name": "lonely", "version": "1.0"}]
    assert loads.releases == []
    with hub.db.transaction() as session:
        assert session.get(SiteRelease, "other\x1flonely\x1f1.0") is None
        assert session.scalars(select(SiteBlob).where(SiteBlob.key.like("other%"))).first() is None


def test_full_still_writes_everything_and_rebases(hub: AppContext, tmp_path: Path, loads: Loads) -> None:
    export(hub, tmp_path, loads)
    with hub.db.transaction() as session:
        release_named(session, "pkg0").state = ReleaseState.REMOVED
    export(hub, tmp_path, loads)
    full = export(hub, tmp_path, loads, full=True)
    assert (full.base, full.releases, full.blobs) == (0, SIZE - 1, SIZE - 1)
    with hub.db.transaction() as session:
        release_named(session, "pkg0").state = ReleaseState.ACTIVE
    again = export(hub, tmp_path, loads)
    assert again.base == full.seq and names(manifest(again), "releases") == ["pkg0"]
