"""Conditional and range requests follow RFC 9110, on both serving layers.

Index pages answer If-None-Match (the fast path and aiohttp share one
function); package files answer every precondition and one byte range
(restorer.conditional decides, FileResponse only sends).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from restorer.conditional import UNSATISFIABLE, ByteRange, byte_range, decide_file, entity_tags, if_range_holds, none_match
from tests.support.rawhttp import Reply, exchange, make_site, port_of, serve_with

ETAG = '"abc"'
LAST_MODIFIED = "Wed, 02 Dec 2026 10:00:00 GMT"
MTIME_S = 1796205600  # LAST_MODIFIED


# --- the rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "matches"),
    [
        ("*", True),
        (ETAG, True),
        ("W/" + ETAG, True),  # If-None-Match compares weakly
        (f'"x", {ETAG}', True),
        (f'"x",{ETAG} , ', True),
        ('"x"', False),
        (f"garbage{ETAG}garbage", False),  # not a list of entity-tags: no member matches
        (f'{ETAG}garbage', False),
        ('"a,b"', False),
        ("", False),
        ('abc', False),
    ],
)
def test_if_none_match(field: str, matches: bool) -> None:
    assert none_match(field, ETAG) is matches


def test_a_comma_inside_an_entity_tag_is_part_of_it() -> None:
    assert entity_tags('"a,b", W/"c"').opaque == frozenset({'"a,b"', '"c"'})
    assert entity_tags('"a,b", W/"c"').strong == frozenset({'"a,b"'})


@pytest.mark.parametrize(
    ("field", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-1", 10, ByteRange(0, 1)),
        ("BYTES=0-1", 10, ByteRange(0, 1)),  # the unit is case-insensitive
        ("bytes=2-", 10, ByteRange(2, 9)),
        ("bytes=2-99", 10, ByteRange(2, 9)),
        ("bytes=-3", 10, ByteRange(7, 9)),
        ("bytes=-30", 10, ByteRange(0, 9)),
        ("bytes= 0-1 ,", 10, ByteRange(0, 1)),  # empty list members are allowed
        ("bytes=" + "9" * 5000 + "-", 10, UNSATISFIABLE),
        ("bytes=0-" + "9" * 5000, 10, ByteRange(0, 9)),
        ("bytes=-0", 10, UNSATISFIABLE),
        ("bytes=10-", 10, UNSATISFIABLE),
        ("bytes=-1", 0, UNSATISFIABLE),
        ("items=0-1", 10, None),  # another unit: ignored
        ("bytes=x", 10, None),  # malformed: ignored
        ("bytes=3-1", 10, None),
        ("bytes=-", 10, None),
        ("bytes=", 10, None),
        ("bytes 0-1", 10, None),
        ("bytes=0-1,3-4", 10, None),  # several ranges: the whole file
    ],
)
def test_byte_range(field: str | None, size: int, expected: ByteRange | None) -> None:
    assert byte_range(field, size) == expected


@pytest.mark.parametrize(
    ("field", "holds"),
    [(None, True), (ETAG, True), ('"other"', False), ("W/" + ETAG, False), (LAST_MODIFIED, True),
     ("Wed, 02 Dec 2026 10:00:01 GMT", False), ("not a date", False)],
)
def test_if_range(field: str | None, holds: bool) -> None:
    assert if_range_holds(field, ETAG, LAST_MODIFIED) is holds


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("GET", {}, 200),
        ("GET", {"If-Match": '"other"'}, 412),
        ("GET", {"If-Match": "*"}, 200),
        ("GET", {"If-Match": "W/" + ETAG}, 412),  # If-Match compares strongly
        ("GET", {"If-Unmodified-Since": "Wed, 02 Dec 2026 09:00:00 GMT"}, 412),
        ("GET", {"If-Match": ETAG, "If-Unmodified-Since": "Wed, 02 Dec 2026 09:00:00 GMT"}, 200),
        ("GET", {"If-None-Match": ETAG}, 304),
        ("HEAD", {"If-None-Match": "*"}, 304),
        ("GET", {"If-Modified-Since": LAST_MODIFIED}, 304),
        ("GET", {"If-Modified-Since": "Wed, 02 Dec 2026 09:00:00 GMT"}, 200),
        ("GET", {"If-Modified-Since": "yesterday"}, 200),
        ("GET", {"If-None-Match": '"other"', "If-Modified-Since": LAST_MODIFIED}, 200),  # If-None-Match decides
        ("GET", {"Range": "bytes=0-1"}, 206),
        ("HEAD", {"Range": "bytes=0-1"}, 200),  # ranges are defined for GET only
        ("GET", {"Range": "bytes=0-1", "If-Range": '"other"'}, 200),
        ("GET", {"Range": "bytes=-0", "If-Range": '"other"'}, 200),
        ("GET", {"Range": "bytes=-0"}, 416),
        ("GET", {"Range": "bytes=0-1", "If-None-Match": ETAG}, 304),
    ],
)
def test_decide_file_follows_rfc_9110s_order(method: str, headers: dict[str, str], status: int) -> None:
    assert decide_file(method, headers, ETAG, LAST_MODIFIED, MTIME_S, 10).status == status


# --- against both layers of a running server ----------------------------------------------------


@dataclass(frozen=True)
class Served:
    ports: dict[str, int]
    page: str
    page_etag: str
    file: str
    file_etag: str
    file_last_modified: str
    file_bytes: bytes


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, site_wheels: dict[str, Path]) -> Iterator[Served]:
    app = make_site(tmp_path_factory.mktemp("conditional") / "site", site_wheels)
    home = app.home.root
    app.close()
    with serve_with(home, "fast_path = false") as plain, serve_with(home, "") as fast:
        port = port_of(fast)
        page = get(port, "/pypi/simple/alpha/", {"Accept": "application/vnd.pypi.simple.v1+json"})
        path = "/pypi/" + json.loads(page.body)["files"][0]["url"].removeprefix("../../")
        wheel = get(port, path, {})
        html_etag = get(port, "/pypi/simple/alpha/", {}).headers["etag"]
        yield Served({"fast": port, "plain": port_of(plain)}, "/pypi/simple/alpha/", html_etag, path,
                     wheel.headers["etag"], wheel.headers["last-modified"], wheel.body)


def get(port: int, path: str, headers: dict[str, str], method: str = "GET") -> Reply:
    lines = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    result = exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode(), first_is_head=method == "HEAD")
    assert len(result.replies) == 1 and result.closed
    return result.replies[0]


LAYERS = pytest.mark.parametrize("layer", ["fast", "plain"])


@LAYERS
@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [("*", 304), ("{etag}", 304), ("W/{etag}", 304), ('"x", {etag}', 304), ("garbage{etag}garbage", 200), ('"x"', 200)],
)
def test_page_if_none_match(served: Served, layer: str, if_none_match: str, status: int) -> None:
    reply = get(served.ports[layer], served.page, {"If-None-Match": if_none_match.format(etag=served.page_etag)})
    assert reply.status == status
    assert reply.headers["etag"] == served.page_etag
    assert len(reply.body) == (0 if status == 304 else int(reply.headers["content-length"]))


@LAYERS
@pytest.mark.parametrize(
    ("headers", "status", "part"),
    [
        ({"If-None-Match": "*"}, 304, None),
        ({"If-None-Match": "{etag}"}, 304, None),
        ({"If-None-Match": "garbage{etag}garbage"}, 200, None),
        ({"If-Modified-Since": "{last_modified}"}, 304, None),
        ({"If-Match": '"other"'}, 412, None),
        ({"Range": "bytes=0-1"}, 206, (0, 2)),
        ({"Range": "bytes=-3"}, 206, (-3, None)),
        ({"Range": "bytes=5-"}, 206, (5, None)),
        ({"Range": "bytes=-0"}, 416, None),
        ({"Range": "bytes=99999999-"}, 416, None),
        ({"Range": "items=0-1"}, 200, None),
        ({"Range": "bytes=x"}, 200, None),
        ({"Range": "bytes=3-1"}, 200, None),
        ({"Range": "bytes=0-1,4-5"}, 200, None),
        ({"Range": "bytes=0-1", "If-Range": "{etag}"}, 206, (0, 2)),
        ({"Range": "bytes=0-1", "If-Range": "{last_modified}"}, 206, (0, 2)),
        ({"Range": "bytes=0-1", "If-Range": '"other"'}, 200, None),
        ({"Range": "bytes=0-1", "If-Range": "Thu, 01 Jan 1970 00:00:00 GMT"}, 200, None),
    ],
)
def test_file_conditions_and_ranges(served: Served, layer: str, headers: dict[str, str], status: int, part: tuple[int, int | None] | None) -> None:
    values = {"etag": served.file_etag, "last_modified": served.file_last_modified}
    reply = get(served.ports[layer], served.file, {k: v.format(**values) for k, v in headers.items()})
    size = len(served.file_bytes)
    assert reply.status == status
    if status == 200:
        assert reply.body == served.file_bytes
    elif status == 206:
        assert part is not None
        expected = served.file_bytes[part[0] : part[1]]
        first = part[0] % size
        assert reply.body == expected
        assert reply.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{size}"
    elif status == 416:
        assert reply.headers["content-range"] == f"bytes */{size}" and reply.body == b""
    elif status == 304:
        assert reply.headers["etag"] == served.file_etag and reply.body == b""


@LAYERS
def test_a_range_on_head_is_ignored(served: Served, layer: str) -> None:
    reply = get(served.ports[layer], served.file, {"Range": "bytes=0-1"}, method="HEAD")
    assert reply.status == 200 and reply.headers["content-length"] == str(len(served.file_bytes))
