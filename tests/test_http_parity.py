"""The fast path reads, refuses and frames every request head as aiohttp alone does.

A differential test: the same bytes go to a `reservoir serve` with its fast
path and to one with `[server] fast_path = false` (aiohttp alone), both over
one published site, and the answers must agree in status, framing and
whether the connection stays open. Each input is a generated request
followed by a sentinel request with `Connection: close`, so how each server
frames the first decides what it makes of the second: a smuggled request
shows up as a difference.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.rawhttp import Exchange, exchange, make_site, port_of, serve_with

SENTINEL = b"GET /healthz HTTP/1.1\r\nHost: sentinel\r\nConnection: close\r\n\r\n"
PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"


@dataclass(frozen=True)
class Pair:
    fast: int  # ports
    plain: int
    file_path: str  # a published wheel's URL path
    page_etag: str

    def both(self, raw: bytes) -> tuple[Exchange, Exchange]:
        first_is_head = raw.startswith(b"HEAD ")
        return exchange(self.fast, raw, first_is_head=first_is_head), exchange(self.plain, raw, first_is_head=first_is_head)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, site_wheels: dict[str, Path]) -> Iterator[Pair]:
    app = make_site(tmp_path_factory.mktemp("parity") / "site", site_wheels)
    home = app.home.root
    app.close()
    with serve_with(home, "fast_path = false") as plain, serve_with(home, "") as fast:
        page = exchange(port_of(fast), b"GET /pypi/simple/alpha/ HTTP/1.1\r\nHost: x\r\nAccept: "
                        + PIP_ACCEPT.encode() + b"\r\nConnection: close\r\n\r\n").replies[0]
        wheel = json.loads(page.body)["files"][0]["url"].removeprefix("../../")
        yield Pair(port_of(fast), port_of(plain), "/pypi/" + wheel, page.headers["etag"])


def assert_same(pair: Pair, raw: bytes) -> tuple[Exchange, Exchange]:
    fast, plain = pair.both(raw)
    assert fast.framing == plain.framing, raw
    for reply in (*fast.replies, *plain.replies):
        assert reply.status < 200 or reply.headers.get("server") == "reservoir", (raw, reply.headers)
    return fast, plain


def request(*lines: str | bytes, end: bytes = b"\r\n\r\n") -> bytes:
    return b"\r\n".join(line.encode("latin-1") if isinstance(line, str) else line for line in lines) + end


# The issue's cases, and the classic request smuggling heads.
FIXED = {
    "plain": request("GET /pypi/simple/ HTTP/1.1", "Host: x"),
    "no host on 1.1": request("GET /pypi/simple/ HTTP/1.1"),
    "no host on 1.0": request("GET /pypi/simple/ HTTP/1.0"),
    "control char in a value": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "X-A: a\x01b"),
    "DEL in a value": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "X-A: a\x7fb"),
    "NUL in a value": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "X-A: a\x00b"),
    "non-UTF-8 query": request("GET /pypi/simple/?a=\xff HTTP/1.1", "Host: x"),
    "non-UTF-8 path": request("GET /pypi/simple/\xff/ HTTP/1.1", "Host: x"),
    "head ending LF CRLF": b"GET /pypi/simple/ HTTP/1.1\r\nHost: x\n\r\n",
    "bare LF everywhere": b"GET /pypi/simple/ HTTP/1.1\nHost: x\n\n",
    "bare CR": b"GET /pypi/simple/ HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n",
    "HTTP/2.0": request("GET /pypi/simple/ HTTP/2.0", "Host: x"),
    "HTTP/0.9": b"GET /pypi/simple/\r\n\r\n",
    "HTTP/1.2": request("GET /pypi/simple/ HTTP/1.2", "Host: x"),
    "lowercase method": request("get /pypi/simple/ HTTP/1.1", "Host: x"),
    "lowercase version": request("GET /pypi/simple/ http/1.1", "Host: x"),
    "absolute form": request("GET http://x/pypi/simple/ HTTP/1.1", "Host: x"),
    "asterisk form": request("OPTIONS * HTTP/1.1", "Host: x"),
    "CL and TE": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "Content-Length: 4", "Transfer-Encoding: chunked") + b"0\r\n\r\n",
    "duplicate CL": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "Content-Length: 1", "Content-Length: 2") + b"ab",
    "CL list": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "Content-Length: 1, 1") + b"a",
    "negative CL": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "Content-Length: -1"),
    "TE not chunked last": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "Transfer-Encoding: chunked, identity"),
    "TE obfuscated": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "Transfer-Encoding : chunked") + b"0\r\n\r\n",
    "chunked GET": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "Transfer-Encoding: chunked") + b"3\r\nabc\r\n0\r\n\r\n",
    "obs-fold": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "X-A: a", " folded"),
    "space before colon": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "Accept : text/html"),
    "duplicate host": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "Host: y"),
    "huge header": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "X-A: " + "a" * 9000),
    "huge target": request("GET /pypi/simple/" + "a" * 9000 + "/ HTTP/1.1", "Host: x"),
    "many headers": request("GET /pypi/simple/ HTTP/1.1", "Host: x", *(f"X-{i}: v" for i in range(140))),
    "leading CRLF": b"\r\n" + request("GET /pypi/simple/ HTTP/1.1", "Host: x"),
    "double space": request("GET  /pypi/simple/ HTTP/1.1", "Host: x"),
    "fragment": request("GET /pypi/simple/alpha/#x HTTP/1.1", "Host: x"),
    "percent-encoded project": request("GET /pypi/simple/%61lpha/ HTTP/1.1", "Host: x"),
    "dot segments": request("GET /pypi/simple/../simple/alpha/ HTTP/1.1", "Host: x"),
    "expect": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "Expect: 100-continue"),
    "upgrade": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "Connection: Upgrade", "Upgrade: websocket"),
    "h2c preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "1.0 keep-alive": request("GET /pypi/simple/ HTTP/1.0", "Connection: keep-alive"),
    "1.1 close": request("GET /pypi/simple/ HTTP/1.1", "Host: x", "Connection: close"),
    "HEAD": request("HEAD /pypi/simple/alpha/ HTTP/1.1", "Host: x"),
    "POST with body": request("POST /pypi/simple/ HTTP/1.1", "Host: x", "Content-Length: 3") + b"abc",
    "incomplete": b"GET /pypi/simple/ HTTP/1.1\r\nHost: x\r\n",
    "not HTTP": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}


@pytest.mark.parametrize("name", sorted(FIXED))
def test_fixed_cases_get_the_same_answer_from_both_layers(pair: Pair, name: str) -> None:
    assert_same(pair, FIXED[name] + SENTINEL)


@pytest.mark.parametrize(
    ("name", "status"),
    [("no host on 1.1", 400), ("control char in a value", 400), ("DEL in a value", 400), ("non-UTF-8 query", 400),
     ("head ending LF CRLF", 400), ("HTTP/2.0", 505), ("HTTP/0.9", 505), ("duplicate CL", 400), ("CL and TE", 400),
     ("obs-fold", 400), ("lowercase method", 400)],
)
def test_the_issues_heads_are_refused(pair: Pair, name: str, status: int) -> None:
    fast, plain = assert_same(pair, FIXED[name])
    assert [r.status for r in fast.replies] == [status] and fast.closed
    if status == 505:
        assert fast.replies[0].version == "HTTP/1.1"  # the version this server speaks, not the one asked for


def test_no_answer_names_the_software_version(pair: Pair) -> None:
    for raw in (FIXED["plain"], FIXED["no host on 1.1"], request("GET /healthz HTTP/1.1", "Host: x"),
                request("GET /nowhere HTTP/1.1", "Host: x"), request(f"GET {pair.file_path} HTTP/1.1", "Host: x", "Range: bytes=0-1")):
        for port in (pair.fast, pair.plain):
            for reply in exchange(port, raw + SENTINEL).replies:
                assert reply.headers["server"] == "reservoir"
                assert not any("aiohttp" in value.lower() or "python" in value.lower() for value in reply.headers.values())


# --- generated heads --------------------------------------------------------------------------

def mostly(usual: object, *rare: object) -> st.SearchStrategy:
    """`usual` (or one of a list of usual values) nine times in ten, else one of `rare`.

    Most inputs are then near-valid heads, which both layers answer, with one or two things wrong.
    """
    usual_values = usual if isinstance(usual, list) else [usual]
    return st.integers(0, 9).flatmap(lambda n: st.sampled_from(usual_values) if n < 9 else st.sampled_from(rare))


LINE_END = mostly(b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r\n", b" \r\n")
METHOD = mostly([b"GET", b"GET", b"HEAD"], b"POST", b"get", b"OPTIONS", b"PUT", b"G ET", b"", b"DELETE")
VERSION = mostly([b" HTTP/1.1", b" HTTP/1.1", b" HTTP/1.0"], b" HTTP/2.0", b" HTTP/0.9", b" HTTP/1.2", b" http/1.1",
                 b" HTTP/1", b"", b" HTTP/1.1 ", b"  HTTP/1.1")
NOISE = mostly(b"", b"%", b"%2f", b"#x", b"?", b"?a=\xff", b"\xff", b" ", b"\x00", b"/..", b"%00", b"\x7f", b"?format=x")
SEPARATOR = mostly(b" ", b"", b"\t", b"  ", b" \t")
ODD_VALUES = (b"", b"a\tb", b"a\x01b", b"\xc3\xa9", b"\xff", b"a\x00b", b"a,b", b"a\x7fb", b"a\rb")
HEADER_NAMES = mostly(
    [b"Accept", b"Accept", b"Accept-Encoding", b"If-None-Match", b"Range", b"Connection", b"Connection", b"Content-Length",
     b"Transfer-Encoding", b"If-Range", b"Authorization"],
    b"Expect", b"Host", b"Host ", b"Bad Name", b"", b"Upgrade", b"X-\xff",
)


@st.composite
def requests(draw: st.DrawFn, pair: Pair) -> bytes:
    targets = [b"/pypi/simple/", b"/pypi/simple/alpha/", b"/pypi/simple/beta/", b"/pypi/simple/Alpha", b"/pypi/simple/nowhere/",
               b"/healthz", b"/admin/", b"*", b"http://x/pypi/simple/", pair.file_path.encode(), pair.file_path.encode(),
               b"/pypi/simple/alpha/?format=text/html", b""]
    target = draw(st.sampled_from(targets)) + draw(NOISE)
    line = draw(METHOD) + b" " + target + draw(VERSION)
    headers = [b"Host: x"] if draw(mostly(True, False)) else []
    useful = {
        b"Accept": [PIP_ACCEPT.encode(), b"text/html", b"application/json", b"*/*"],
        b"Accept-Encoding": [b"gzip", b"identity", b"gzip, br"],
        b"If-None-Match": [pair.page_etag.encode(), b"*", b"garbage" + pair.page_etag.encode() + b"garbage", b'W/"x"'],
        b"Range": [b"bytes=0-1", b"bytes=-0", b"bytes=0-1,3-4", b"items=0-1", b"bytes=x", b"bytes=5-"],
        b"Connection": [b"close", b"keep-alive", b"Upgrade"],
        b"Content-Length": [b"0", b"3", b"-1", b"1, 1", b"+3", b"0x3"],
        b"Transfer-Encoding": [b"chunked", b"identity", b"chunked, identity", b"gzip, chunked"],
        b"Host": [b"y", b""],
    }
    for _ in range(draw(st.integers(0, 3))):
        name = draw(HEADER_NAMES)
        value = draw(st.sampled_from(useful.get(name, [b"v"])))
        if draw(mostly(False, True)):
            value = draw(st.sampled_from(ODD_VALUES) | st.binary(max_size=4))
        headers.append(name + b":" + draw(SEPARATOR) + value)
    if draw(mostly(False, True)):
        headers.append(b" obs-fold")
    raw = line + b"".join(draw(LINE_END) + header for header in headers) + draw(LINE_END)
    raw += draw(mostly(b"\r\n", b"\n", b"", b"\r"))
    raw += draw(mostly(b"", b"abc", b"0\r\n\r\n", b"3\r\nabc\r\n0\r\n\r\n"))
    return raw


@settings(max_examples=200, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_generated_heads_get_the_same_answer_from_both_layers(pair: Pair, data: st.DataObject) -> None:
    assert_same(pair, data.draw(requests(pair)) + SENTINEL)
