from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from reservoir.context import AppContext
from reservoir.errors import ReservoirError
from reservoir.models import Channel, Gate, Release, ReleaseState
from restorer.publish import PublishResult, publish_site
from restorer.publish.tree import live_generation, publish_tree
from tests.support.site import add_file, wheel_named


def publish_pypi(site: AppContext) -> PublishResult:
    """A full publish; the PyPI tree's result (other ecosystems' publishers are installed too)."""
    return next(result for result in publish_site(site) if result.kind == "pypi")


def read_json(path: Path) -> dict:
    return json.loads(path.read_bytes())


def test_project_json_carries_every_pep_field(site: AppContext) -> None:
    result = publish_pypi(site)
    page = read_json(result.generation / "simple" / "alpha" / "index.json")
    assert page["meta"] == {"api-version": "1.1"}
    assert page["name"] == "alpha"
    assert page["versions"] == ["0.9", "1.0", "2.0"]
    by_name = {f["filename"]: f for f in page["files"]}
    old = by_name["alpha-0.9-py3-none-any.whl"]
    assert old["yanked"] == "broken build"
    current = by_name["alpha-2.0-py3-none-any.whl"]
    assert current["yanked"] is False
    assert current["upload-time"] == "2026-01-02T03:04:05.000000Z"
    assert current["core-metadata"] == {"sha256": current["core-metadata"]["sha256"]}
    assert "dist-info-metadata" not in current  # PEP 714: that key makes pip 22.3 to 23.1 fail
    sha = current["hashes"]["sha256"]
    file_path = (result.generation / "simple" / "alpha" / current["url"]).resolve()
    assert file_path.read_bytes() == site.blobs.path(sha).read_bytes()
    assert current["size"] == file_path.stat().st_size
    metadata = Path(str(file_path) + ".metadata").read_bytes()
    assert b"Name: alpha" in metadata
    import hashlib

    assert hashlib.sha256(metadata).hexdigest() == current["core-metadata"]["sha256"]
    beta = read_json(result.generation / "simple" / "beta" / "index.json")
    assert beta["files"][0]["requires-python"] == ">=3.8"


def test_files_are_hard_links_into_the_blob_store(site: AppContext) -> None:
    result = publish_pypi(site)
    files = [p for p in (result.generation / "files").rglob("*.whl")]
    assert files
    for path in files:
        assert path.stat().st_ino == site.blobs.path(path.parent.name).stat().st_ino


def test_project_html_carries_the_same_fields(site: AppContext) -> None:
    result = publish_pypi(site)
    html = (result.generation / "simple" / "alpha" / "index.html").read_text()
    assert '<meta name="pypi:repository-version" content="1.1">' in html
    assert 'data-yanked="broken build"' in html
    assert "data-core-metadata=\"sha256=" in html and "data-dist-info-metadata=\"sha256=" in html
    assert "#sha256=" in html
    beta = (result.generation / "simple" / "beta" / "index.html").read_text()
    assert 'data-requires-python="&gt;=3.8"' in beta


def test_root_lists_normalized_projects_and_pages_have_gzip_twins(site: AppContext) -> None:
    result = publish_pypi(site)
    root = read_json(result.generation / "simple" / "index.json")
    assert sorted(p["name"] for p in root["projects"]) == ["Mixed-Case.Name", "alpha", "beta", "gamma"]
    assert (result.generation / "simple" / "mixed-case-name" / "index.json").is_file()
    html = (result.generation / "simple" / "index.html").read_text()
    assert 'href="mixed-case-name/"' in html
    for page in (result.generation / "simple").rglob("index.*"):
        if page.suffix != ".gz":
            assert gzip.decompress(Path(str(page) + ".gz").read_bytes()) == page.read_bytes()


def test_only_active_allowed_releases_are_published(site: AppContext) -> None:
    with site.db.transaction() as s:
        gamma = s.scalars(select(Release).where(Release.name == "gamma")).one()
        gamma.gate = Gate.HELD
        beta = s.scalars(select(Release).where(Release.name == "beta")).one()
        beta.state = ReleaseState.REMOVED
    result = publish_pypi(site)
    root = read_json(result.generation / "simple" / "index.json")
    assert sorted(p["name"] for p in root["projects"]) == ["Mixed-Case.Name", "alpha"]
    assert not (result.generation / "simple" / "gamma").exists()


def test_publish_swaps_the_current_symlink(site: AppContext) -> None:
    first = publish_pypi(site)
    root = site.home.trees_dir / "pypi"
    assert os.readlink(root / "current") == first.generation.name
    second = publish_pypi(site)
    assert second.generation != first.generation
    assert live_generation(root) == second.generation
    assert first.generation.exists()  # kept for clients mid-download


def test_a_failed_build_leaves_the_live_tree_untouched(tmp_path: Path) -> None:
    root = tmp_path / "tree"

    def good(tree: Path) -> None:
        (tree / "index.html").write_text("v1")

    def bad(tree: Path) -> None:
        (tree / "index.html").write_text("half")
        raise ReservoirError("disk full while writing")

    live = publish_tree(root, good)
    with pytest.raises(ReservoirError):
        publish_tree(root, bad)
    assert live_generation(root) == live
    assert (root / "current" / "index.html").read_text() == "v1"
    assert not list(root.glob(".build-*"))


def test_old_generations_are_pruned(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    made = [publish_tree(root, lambda t: (t / "x").write_text("x"), keep=2, grace_s=0) for _ in range(4)]
    assert sorted(root.glob("gen-*")) == sorted(made[-2:])
    assert live_generation(root) == made[-1]


def test_two_channels_merge_into_one_index(site: AppContext, site_wheels: dict[str, Path]) -> None:
    with site.db.transaction() as s:
        other = Channel(name="py-extra", kind="pypi", upstream="file:///other", options={})
        s.add(other)
        s.flush()
        add_file(s, site.blobs, other, wheel_named(site_wheels, "gamma"))
        add_file(s, site.blobs, other, wheel_named(site_wheels, "alpha-2.0"))
    result = publish_pypi(site)
    page = read_json(result.generation / "simple" / "gamma" / "index.json")
    assert [f["filename"] for f in page["files"]] == ["gamma-1.0-py3-none-any.whl"]
