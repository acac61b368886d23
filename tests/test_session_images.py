"""The debootstrap image's inputs: which apt source it comes from, and the cache key they make."""

from __future__ import annotations

from pathlib import Path

import pytest

from reservoir.errors import ReservoirError
from sessions.images import AptOrigin, debootstrap_tarball, host_apt_origin, tarball_path


def test_the_release_suite_of_the_first_deb822_source_is_used(tmp_path: Path) -> None:
    sources = tmp_path / "sources.list.d"
    sources.mkdir()
    (sources / "a.sources").write_text(
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    (sources / "b.sources").write_text("# comment\nTypes: deb\nURIs: http://mirror.example/debian\nSuites: bookworm-updates bookworm\n")
    assert host_apt_origin(sources, tmp_path / "none") == AptOrigin("bookworm", "http://mirror.example/debian")


def test_a_one_line_source_is_read_when_there_is_no_deb822_one(tmp_path: Path) -> None:
    listing = tmp_path / "sources.list"
    listing.write_text("deb [signed-by=/k.gpg] http://mirror.example/debian trixie-updates main\n"
                       "deb [signed-by=/k.gpg] http://mirror.example/debian trixie main\n")
    assert host_apt_origin(tmp_path, listing) == AptOrigin("trixie", "http://mirror.example/debian")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert host_apt_origin(empty, tmp_path / "missing") is None


def test_the_cache_is_keyed_by_every_input_and_a_cached_tarball_is_used_as_is(tmp_path: Path) -> None:
    origin = AptOrigin("bookworm", "http://mirror.example/debian")
    path = tarball_path(tmp_path, origin)
    assert path != tarball_path(tmp_path, AptOrigin("bookworm", "http://other.example/debian"))
    assert path != tarball_path(tmp_path, origin, ("python3",))
    path.write_bytes(b"cached")
    assert debootstrap_tarball(tmp_path, origin) == path  # no debootstrap run: it would need root and a mirror


def test_no_origin_is_one_line_saying_what_to_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sessions.images.host_apt_origin", lambda: None)
    with pytest.raises(ReservoirError) as raised:
        debootstrap_tarball(tmp_path)
    assert "--suite and --mirror" in (raised.value.hint or "")
