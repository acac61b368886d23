"""Export on the hub, import on the site: the happy paths and the sequence rules."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reservoir.keys import load_signing_key
from restorer.importer import BundleReplay, SequenceGap, import_bundle
from tests.support.bundles import Pair, add_to_hub, imported_seqs, make_pair, served_projects, site_catalog
from tests.support.site import wheel_named
from transferer.export import export_bundle
from transferer.format import MANIFEST, SIGNATURE, parse_manifest


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    p = make_pair(tmp_path)
    yield p
    p.close()


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reservoir", "--home", str(home), *args], capture_output=True, text=True)


def test_round_trip_then_incremental(tmp_path: Path, site_wheels: dict[str, Path], db_url: str) -> None:
    """On SQLite and PostgreSQL: a full bundle, nothing new, then an incremental one with only new blobs."""
    pair = make_pair(tmp_path, site_db_url=db_url)
    add_to_hub(pair.hub, wheel_named(site_wheels, "alpha-1.0"), wheel_named(site_wheels, "beta"))
    first = export_bundle(pair.hub, pair.media)
    assert first.path is not None and first.seq == 1 and first.base == 0
    assert import_bundle(pair.site, first.path).status == "imported"
    assert site_catalog(pair.site) == {
        "alpha==1.0": ["alpha-1.0-py3-none-any.whl"],
        "beta==1.0": ["beta-1.0-py3-none-any.whl"],
    }
    assert served_projects(pair.site) == ["alpha", "beta"]

    nothing = export_bundle(pair.hub, pair.media)
    assert nothing.path is None
    assert len(list(pair.media.iterdir())) == 1

    add_to_hub(pair.hub, wheel_named(site_wheels, "alpha-2.0"))
    second = export_bundle(pair.hub, pair.media)
    assert second.path is not None and (second.seq, second.base) == (2, 1)
    manifest = parse_manifest((second.path / MANIFEST).read_bytes())
    assert [r["version"] for r in manifest.releases] == ["2.0"]
    assert len(manifest.blobs) == 2  # the wheel and its metadata: beta's blobs are not sent again
    assert import_bundle(pair.site, second.path).status == "imported"
    assert "alpha==2.0" in site_catalog(pair.site)
    assert imported_seqs(pair.site) == [1, 2]
    pair.close()


def test_cli_export_prints_the_path_and_import_twice_is_a_no_op(pair: Pair, site_wheels: dict[str, Path]) -> None:
    add_to_hub(pair.hub, wheel_named(site_wheels, "gamma"))
    result = cli(pair.hub.home.root, "export", "--out", str(pair.media), "--chunk-size", "1K")
    assert result.returncode == 0, result.stderr
    bundle = Path(result.stdout.strip().splitlines()[-1])
    assert bundle.is_dir() and len(list(bundle.glob("payload.tar.*"))) > 1
    first = cli(pair.site.home.root, "import", str(bundle))
    assert first.returncode == 0 and "imported bundle 1" in first.stdout, first.stderr
    again = cli(pair.site.home.root, "import", str(bundle))
    assert again.returncode == 0 and "already imported; nothing to do" in again.stdout
    assert "nothing new since bundle 1" in cli(pair.hub.home.root, "export", "--out", str(pair.media)).stdout


def test_removed_releases_leave_the_site(pair: Pair, site_wheels: dict[str, Path]) -> None:
    from sqlalchemy import select

    from reservoir.models import Release, ReleaseState

    add_to_hub(pair.hub, wheel_named(site_wheels, "alpha-1.0"), wheel_named(site_wheels, "gamma"))
    import_bundle(pair.site, export_bundle(pair.hub, pair.media).path)  # type: ignore[arg-type]
    with pair.hub.db.transaction() as s:
        s.scalars(select(Release).where(Release.name == "gamma")).one().state = ReleaseState.REMOVED
    second = export_bundle(pair.hub, pair.media)
    assert second.removed == 1 and second.blobs == 0
    import_bundle(pair.site, second.path)  # type: ignore[arg-type]
    assert served_projects(pair.site) == ["alpha"]


def test_a_gap_names_the_missing_bundles(pair: Pair, site_wheels: dict[str, Path]) -> None:
    bundles = []
    for name in ("alpha-1.0", "beta", "gamma"):
        add_to_hub(pair.hub, wheel_named(site_wheels, name))
        bundles.append(export_bundle(pair.hub, pair.media).path)
    import_bundle(pair.site, bundles[0])  # type: ignore[arg-type]
    with pytest.raises(SequenceGap, match="site is at 1: missing bundles 2"):
        import_bundle(pair.site, bundles[2])  # type: ignore[arg-type]
    assert imported_seqs(pair.site) == [1]
    result = cli(pair.site.home.root, "import", str(bundles[2]))
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1


def test_an_old_bundle_replayed_changes_nothing(pair: Pair, site_wheels: dict[str, Path]) -> None:
    add_to_hub(pair.hub, wheel_named(site_wheels, "alpha-1.0"))
    first = export_bundle(pair.hub, pair.media).path
    add_to_hub(pair.hub, wheel_named(site_wheels, "beta"))
    second = export_bundle(pair.hub, pair.media).path
    import_bundle(pair.site, first)  # type: ignore[arg-type]
    import_bundle(pair.site, second)  # type: ignore[arg-type]
    before = site_catalog(pair.site)
    assert import_bundle(pair.site, first).status == "already"  # type: ignore[arg-type]
    # A different bundle 1, validly signed (a hub restored from an old backup): refused as a replay.
    manifest = json.loads((first / MANIFEST).read_bytes())  # type: ignore[operator]
    manifest["created"] = "2000-01-01T00:00:00+00:00"
    raw = json.dumps(manifest, indent=1, sort_keys=True).encode()
    (first / MANIFEST).write_bytes(raw)  # type: ignore[operator]
    (first / SIGNATURE).write_bytes(load_signing_key(pair.hub.home.keys_dir).sign(raw))  # type: ignore[operator]
    with pytest.raises(BundleReplay, match="conflicts with the bundle 1"):
        import_bundle(pair.site, first)  # type: ignore[arg-type]
    assert site_catalog(pair.site) == before


def test_full_bundle_rebases_the_site(pair: Pair, site_wheels: dict[str, Path]) -> None:
    add_to_hub(pair.hub, wheel_named(site_wheels, "alpha-1.0"))
    export_bundle(pair.hub, pair.media)  # seq 1 never reaches the site
    add_to_hub(pair.hub, wheel_named(site_wheels, "beta"))
    full = export_bundle(pair.hub, pair.media, full=True)
    assert (full.seq, full.base) == (2, 0)
    assert import_bundle(pair.site, full.path).status == "imported"  # type: ignore[arg-type]
    assert sorted(site_catalog(pair.site)) == ["alpha==1.0", "beta==1.0"]
