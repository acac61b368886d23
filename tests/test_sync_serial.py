"""A sync against an upstream with serials asks the root index once and only the projects that changed.

The upstream is the test index on 127.0.0.1 (tests/support/pypi_index.py) in
its `serials=True` shape: `_last-serial` in the PEP 691 root and pages and
`X-PyPI-Last-Serial`, bumped per project when its page changes, as PyPI does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sqlalchemy import select

from reservoir.cli import cli
from reservoir.db import open_database
from reservoir.models import Channel
from tests.support.pypi_index import RunningIndex, serve_index, serial_of, write_index
from tests.support.wheels import ProjectSpec, build_wheels

UNIVERSE = [
    ProjectSpec("alpha", "1.0", ["beta>=1.0"]),
    ProjectSpec("beta", "1.0"),
    ProjectSpec("gamma", "1.0"),
]
LATER = [ProjectSpec("beta", "1.1")]
CHANNEL = ("--package", "alpha", "--package", "gamma", "--python", "3.11", "--platform", "manylinux_2_28_x86_64")


@pytest.fixture(autouse=True)
def no_installed_vetters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hub.sync.vetters", lambda: [])


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {p.name: p for p in build_wheels(UNIVERSE + LATER, tmp_path_factory.mktemp("wheels"))}


def first_set(wheels: dict[str, Path]) -> list[Path]:
    return [p for name, p in wheels.items() if not name.startswith("beta-1.1")]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def hub_on(home: Path, upstream: str) -> None:
    assert invoke("--home", str(home), "init", "--role", "hub").exit_code == 0
    added = invoke("--home", str(home), "channel", "add", "main", "--kind", "pypi", "--upstream", upstream, *CHANNEL)
    assert added.exit_code == 0, added.output


def sync(home: Path) -> Result:
    result = invoke("--home", str(home), "sync")
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def served(tmp_path: Path, wheels: dict[str, Path]) -> Iterator[RunningIndex]:
    with serve_index(write_index(tmp_path / "upstream", first_set(wheels), serials=True)) as running:
        yield running


def test_no_change_sync_makes_one_request(tmp_path: Path, served: RunningIndex) -> None:
    home = tmp_path / "hub"
    hub_on(home, served.url)
    sync(home)
    assert served.count("page") == 3 and served.count("root") == 0  # nothing cached yet: every page

    for _ in range(2):  # the root read afresh, then answered 304 against its ETag
        served.reset()
        again = sync(home)
        assert "0 added, 0 removed, 0 failed; downloaded 0 files" in again.stdout
        assert served.total() == 1, dict(served.requests)
    assert served.count("root-304") == 1


def test_only_the_project_whose_serial_moved_is_fetched(tmp_path: Path, served: RunningIndex,
                                                        wheels: dict[str, Path]) -> None:
    home = tmp_path / "hub"
    hub_on(home, served.url)
    sync(home)
    sync(home)  # the root's serials are now known
    before = {p: serial_of(served.tree, p) for p in ("alpha", "beta", "gamma")}
    write_index(served.tree.root, [wheels["beta-1.1-py3-none-any.whl"]], serials=True)
    assert serial_of(served.tree, "beta") != before["beta"]
    assert serial_of(served.tree, "alpha") == before["alpha"] and serial_of(served.tree, "gamma") == before["gamma"]

    served.reset()
    third = sync(home)
    assert "+ beta 1.1 (1 file," in third.stdout and "- beta 1.0" in third.stdout
    assert served.count("root") == 1 and served.count("page") == 1  # beta's page, and no other
    assert served.count("304") == 0 and served.count("file") == 1
    served.reset()
    sync(home)
    assert served.total() == 1, dict(served.requests)


def test_changed_options_ask_every_page_once(tmp_path: Path, served: RunningIndex) -> None:
    home = tmp_path / "hub"
    hub_on(home, served.url)
    sync(home)
    sync(home)
    db = open_database(f"sqlite:///{home / 'reservoir.db'}")
    with db.transaction() as session:  # no command edits a channel yet; its options change as an edit would
        channel = session.scalars(select(Channel)).one()
        channel.options = {**channel.options, "pythons": [*channel.options["pythons"], "3.12"]}
    db.dispose()
    served.reset()
    sync(home)
    assert served.count("304") == 3  # each page asked, conditionally
    served.reset()
    sync(home)
    assert served.total() == 1, dict(served.requests)


def test_upstream_without_serials_asks_each_page(tmp_path: Path, wheels: dict[str, Path]) -> None:
    with serve_index(write_index(tmp_path / "upstream", first_set(wheels))) as served:
        home = tmp_path / "hub"
        hub_on(home, served.url)
        sync(home)
        served.reset()
        sync(home)
        assert served.count("304") == 3 and served.count("root") == 0 and served.total() == 3
        write_index(served.tree.root, [wheels["beta-1.1-py3-none-any.whl"]])
        served.reset()
        third = sync(home)
        assert "+ beta 1.1 (1 file," in third.stdout
        assert served.count("page") == 1 and served.count("304") == 2


def test_file_upstream_with_serials_reads_only_changed_pages(tmp_path: Path, wheels: dict[str, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    tree = write_index(tmp_path / "upstream", first_set(wheels), serials=True)
    home = tmp_path / "hub"
    hub_on(home, tree.file_url)
    sync(home)
    sync(home)
    write_index(tree.root, [wheels["beta-1.1-py3-none-any.whl"]], serials=True)
    import downloader.fetch as fetch

    read: list[str] = []
    original = fetch._read_file_page

    def counting(what: str, url: str, folder_pages: tuple[tuple[str, str], ...] = ()) -> fetch.PageResponse:
        read.append(url)
        return original(what, url, folder_pages)

    monkeypatch.setattr(fetch, "_read_file_page", counting)
    third = sync(home)
    assert "+ beta 1.1 (1 file," in third.stdout
    assert sorted(read) == sorted([tree.file_url, tree.file_url + "beta/"])


def test_a_root_larger_than_the_requests_it_saves_is_not_read_again(tmp_path: Path, served: RunningIndex,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A curated channel on a huge index (PyPI's root is tens of MB) asks its few pages instead."""
    monkeypatch.setattr("downloader.pypi.adapter.ROOT_BYTES_PER_PAGE", 16)  # this root: hundreds of bytes, 3 pages
    home = tmp_path / "hub"
    hub_on(home, served.url)
    sync(home)
    served.reset()
    sync(home)  # the root's size is not known yet: read once
    assert served.count("root") == 1
    served.reset()
    again = sync(home)
    assert "0 added, 0 removed, 0 failed; downloaded 0 files" in again.stdout
    assert served.count("root") == 0 and served.total() == 3, dict(served.requests)


def test_root_worth_reading() -> None:
    from downloader.pypi.adapter import ROOT_BYTES_PER_PAGE, root_worth_reading

    assert root_worth_reading(None, 1)
    assert root_worth_reading(50 * ROOT_BYTES_PER_PAGE, 50)
    assert not root_worth_reading(50 * ROOT_BYTES_PER_PAGE + 1, 50)


def test_no_change_sync_loads_no_page_cache(tmp_path: Path, served: RunningIndex,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "hub"
    hub_on(home, served.url)
    sync(home)
    sync(home)  # the root read: its serial is the cursor of a complete sync
    served.reset()
    with monkeypatch.context() as patched:
        patched.setattr("downloader.pypi.cache.load_caches", lambda *a, **k: pytest.fail("the page caches were read"))
        third = sync(home)
    assert "3 releases selected, 0 added, 0 removed, 0 failed; downloaded 0 files" in third.stdout
    assert served.total() == 1 and served.count("root-304") == 1, dict(served.requests)


def test_a_sync_that_failed_a_file_is_followed_by_a_full_one(tmp_path: Path, served: RunningIndex) -> None:
    home = tmp_path / "hub"
    hub_on(home, served.url)
    served.flaky["gamma-1.0-py3-none-any.whl"] = 10_000
    for _ in range(2):  # the second one reads the root: the upstream then stands still
        failed = invoke("--home", str(home), "sync")
        assert failed.exit_code != 0 and "gamma" in failed.output
    served.flaky.clear()
    served.reset()
    retried = sync(home)
    assert "+ gamma 1.0 (1 file," in retried.stdout and " 0 failed;" in retried.stdout
    served.reset()
    assert "0 added, 0 removed, 0 failed; downloaded 0 files" in sync(home).stdout
    assert served.total() == 1  # complete now: the next no-change sync is one request again
