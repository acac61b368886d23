"""The manifest schema: a signed bundle whose fields break it is refused before anything is used.

Each hostile manifest below imported before the schema existed (issue 10):
an absolute release name made the publisher write pages outside the site
home, a vetting decision without `who` broke /admin/licenses. Now each is
refused with one line naming the field, and the site is left as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from licenses.categories import Category
from licenses.policy import Decision
from licenses.report import render_csv, render_html, render_json
from licenses.security.osv import SEVERITIES
from reservoir.context import AppContext
from reservoir.keys import load_signing_key
from reservoir.models import Channel, Release
from restorer.importer import import_bundle
from restorer.models import ImportedBundle
from restorer.publish.tree import UnsafePath, safe_join
from tests.support.bundles import Pair, add_to_hub, imported_seqs, make_pair, release_count, served_projects
from tests.support.site import wheel_named
from transferer.export import export_bundle
from transferer.format import MANIFEST, SIGNATURE, BundleError
from transferer.schema import CATEGORIES, POLICY_DECISIONS, SEVERITIES as SCHEMA_SEVERITIES, installed_ecosystems

Doc = dict[str, Any]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    p = make_pair(tmp_path / "homes")
    yield p
    p.close()


def resign(bundle: Path, hub: AppContext, manifest: Doc) -> None:
    raw = json.dumps(manifest, indent=1, sort_keys=True).encode()
    (bundle / MANIFEST).write_bytes(raw)
    (bundle / SIGNATURE).write_bytes(load_signing_key(hub.home.keys_dir).sign(raw))


def release_named(manifest: Doc, name: str) -> Doc:
    return next(r for r in manifest["releases"] if r["name"] == name)


def outside(tmp_path: Path) -> Path:
    """A directory outside both homes that a hostile name points at."""
    return tmp_path / "outside-the-site"


HOSTILE: dict[str, tuple[Callable[[Doc, Path], None], str]] = {
    "absolute name": (lambda m, t: release_named(m, "alpha").update(name=str(outside(t))), r"releases\[\d\]\.name: unsafe name"),
    "dot-dot name": (lambda m, t: release_named(m, "alpha").update(name="../outside"), r"releases\[\d\]\.name: unsafe name"),
    "unnormalized name": (lambda m, t: release_named(m, "alpha").update(name="Alpha_Beta"),
                          r"releases\[\d\]\.name: not a PEP 503 normalized name: 'Alpha_Beta'"),
    "unparsable version": (lambda m, t: release_named(m, "alpha").update(version="1.0 final"),
                           r"releases\[\d\]\.version: not a PEP 440 version"),
    "file name with a slash": (lambda m, t: release_named(m, "alpha")["artifacts"][0].update(filename="x/alpha-1.0-py3-none-any.whl"),
                               r"releases\[\d\]\.artifacts\[0\]\.filename: unsafe file name"),
    "decision without who": (lambda m, t: release_named(m, "alpha")["meta"].update(vetting={"decisions": [{"decision": "approve"}]}),
                             r"releases\[\d\]\.meta\.vetting\.decisions\[0\]\.who: missing"),
    "unknown channel kind": (lambda m, t: m["channels"][0].update(kind="nix"), r"channels\[0\]\.kind: unknown ecosystem 'nix'"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_signed_manifest_breaking_the_schema_is_refused(pair: Pair, site_wheels: dict[str, Path], tmp_path: Path,
                                                          case: str) -> None:
    mutate, message = HOSTILE[case]
    add_to_hub(pair.hub, wheel_named(site_wheels, "alpha-1.0"), wheel_named(site_wheels, "beta"))
    bundle = export_bundle(pair.hub, pair.media).path
    assert bundle is not None
    manifest = json.loads((bundle / MANIFEST).read_bytes())
    mutate(manifest, tmp_path)
    resign(bundle, pair.hub, manifest)
    with pytest.raises(BundleError, match=message) as refused:
        import_bundle(pair.site, bundle)
    assert len(str(refused.value).splitlines()) == 1
    assert not outside(tmp_path).exists()
    assert imported_seqs(pair.site) == [] and release_count(pair.site) == 0 and served_projects(pair.site) == []


def site_state(site: AppContext) -> tuple[Any, ...]:
    """What a refused bundle must not change: the catalog, the import record and the published tree."""
    with site.db.session() as s:
        releases = sorted((r.channel.name, r.name, r.version, r.gate.value, json.dumps(r.meta, sort_keys=True),
                           sorted(a.filename for a in r.artifacts)) for r in s.scalars(select(Release)))
        channels = sorted((c.name, c.kind, json.dumps(c.options, sort_keys=True)) for c in s.scalars(select(Channel)))
        bundles = sorted((b.seq, b.manifest_sha256) for b in s.scalars(select(ImportedBundle)))
    trees = site.home.trees_dir
    files = {str(p.relative_to(trees)): p.read_bytes() for p in trees.rglob("*") if p.is_file()}
    links = {str(p.relative_to(trees)): os.readlink(p) for p in trees.rglob("*") if p.is_symlink()}
    return releases, channels, bundles, files, links


def test_a_refused_bundle_changes_nothing_on_a_site_that_holds_releases(pair: Pair, site_wheels: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    add_to_hub(pair.hub, wheel_named(site_wheels, "alpha-1.0"), wheel_named(site_wheels, "beta"))
    import_bundle(pair.site, export_bundle(pair.hub, pair.media).path)  # type: ignore[arg-type]
    before = site_state(pair.site)
    assert served_projects(pair.site) == ["alpha", "beta"]
    add_to_hub(pair.hub, wheel_named(site_wheels, "gamma"))
    second = export_bundle(pair.hub, pair.media).path
    assert second is not None
    manifest = json.loads((second / MANIFEST).read_bytes())
    release_named(manifest, "gamma").update(name=str(outside(tmp_path)))
    resign(second, pair.hub, manifest)
    result = subprocess.run(
        [sys.executable, "-m", "reservoir", "--home", str(pair.site.home.root), "import", str(second)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "releases[0].name: unsafe name" in result.stderr
    assert site_state(pair.site) == before
    assert not outside(tmp_path).exists()


def test_the_report_survives_a_vetting_record_stored_before_the_schema(site: AppContext) -> None:
    with site.db.transaction() as s:
        release = s.scalars(select(Release).where(Release.name == "gamma")).one()
        release.meta = {**release.meta, "vetting": {"decisions": [{"decision": "approve"}]}}
    with site.db.session() as s:
        page = render_html(s)
        assert "unreadable vetting record: vetting.decisions[0].who: missing" in page
        assert "gamma" in render_csv(s)
        [row] = [r for r in json.loads(render_json(s))["releases"] if r["name"] == "gamma"]
        assert row["decisions"] == [] and row["vetting_error"]


def test_the_vetting_vocabularies_match_the_licenses_component() -> None:
    assert set(CATEGORIES) == {c.value for c in Category}
    assert set(POLICY_DECISIONS) == {d.value for d in Decision}
    assert set(SCHEMA_SEVERITIES) == set(SEVERITIES)


def test_the_pypi_schema_is_found_through_its_entry_point() -> None:
    from downloader.pypi.schema import SCHEMA

    assert installed_ecosystems()["pypi"] is SCHEMA


@pytest.mark.parametrize("relative", ["/etc/passwd", "../x", "simple/../../x", "a//b", "./a", "a\\b", "a\x00b", ""])
def test_safe_join_refuses_paths_that_leave_the_tree(tmp_path: Path, relative: str) -> None:
    with pytest.raises(UnsafePath):
        safe_join(tmp_path / "tree", relative)


def test_safe_join_refuses_a_link_inside_the_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "simple").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tree / "simple" / "evil").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePath, match="is a link"):
        safe_join(tree, "simple/evil/index.html")
    assert safe_join(tree, "simple", "good", "index.html") == tree / "simple" / "good" / "index.html"


def test_a_release_naming_a_file_the_site_lacks_is_refused_before_the_payload(pair: Pair, site_wheels: dict[str, Path]) -> None:
    """A trusted hub's bundle naming a blob it neither carries nor the site holds would break every later publish."""
    add_to_hub(pair.hub, wheel_named(site_wheels, "alpha-1.0"))
    import_bundle(pair.site, export_bundle(pair.hub, pair.media).path)  # type: ignore[arg-type]
    before = site_state(pair.site)
    add_to_hub(pair.hub, wheel_named(site_wheels, "gamma"))
    second = export_bundle(pair.hub, pair.media).path
    assert second is not None
    manifest = json.loads((second / MANIFEST).read_bytes())
    release_named(manifest, "gamma")["artifacts"][0]["sha256"] = "ab" * 32
    resign(second, pair.hub, manifest)
    with pytest.raises(BundleError, match=r"1 files the releases name are neither in the bundle nor on this site \(first: (ab)+\)"):
        import_bundle(pair.site, second)
    assert site_state(pair.site) == before
