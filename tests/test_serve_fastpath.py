"""The serve fast path: what it answers itself, and that everything else reaches aiohttp intact.

Raw sockets against a real `reservoir serve`, so pipelining, split heads,
hand-over in the middle of a connection and connection handling are seen
as a client sees them.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlsplit

import pytest

from reservoir.context import AppContext
from restorer.fastpath import FastPath, RequestHead, StaticIndexProtocol, parse_head
from restorer.publish import publish_site
from tests.support.site import RunningServer, run_server

PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    wire_bytes: int  # as received: head and body


def read_response(stream: BinaryIO, *, head_request: bool = False) -> RawResponse:
    status_line = stream.readline()
    assert status_line.startswith(b"HTTP/1."), status_line
    status = int(status_line.split(b" ")[1])
    headers: dict[str, str] = {}
    received = len(status_line)
    while (line := stream.readline()) not in (b"\r\n", b""):
        received += len(line)
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head_request or status == 304 else int(headers.get("content-length", "0"))
    body = stream.read(length)
    assert len(body) == length
    return RawResponse(status, headers, body, received + 2 + length)


@pytest.fixture
def served(site: AppContext) -> Iterator[RunningServer]:
    publish_site(site)
    with run_server(site.home.root) as server:
        yield server


@pytest.fixture
def connection(served: RunningServer) -> Iterator[tuple[socket.socket, BinaryIO]]:
    parts = urlsplit(served.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    stream = sock.makefile("rb")
    yield sock, stream
    stream.close()
    sock.close()


def get(path: str, *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def file_path(stream_sock: tuple[socket.socket, BinaryIO], project: str) -> str:
    sock, stream = stream_sock
    sock.sendall(get(f"/pypi/simple/{project}/", f"Accept: {PIP_ACCEPT}"))
    page = read_response(stream)
    return "/pypi/" + json.loads(page.body)["files"][0]["url"].removeprefix("../../")


# --- parse_head: what the fast path reads itself -------------------------------------------


def test_parse_head_reads_a_plain_get() -> None:
    head = parse_head(b"GET /pypi/simple/alpha/?format=x HTTP/1.1\r\nHost: h\r\nAccept:  text/html \r\nX-Empty:")
    assert head == RequestHead(
        "GET", "/pypi/simple/alpha/", "format=x", "1.1", {"host": "h", "accept": "text/html", "x-empty": ""}
    )
    assert head.keep_alive
    assert parse_head(b"HEAD / HTTP/1.0") == RequestHead("HEAD", "/", "", "1.0", {})


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /pypi/simple/ HTTP/1.1",
        b"OPTIONS * HTTP/1.1",
        b"GET http://elsewhere/pypi/simple/ HTTP/1.1",
        b"GET /pypi/simple/ HTTP/2",
        b"GET /pypi/simple/ HTTP/1.1 extra",
        b"GET  /pypi/simple/ HTTP/1.1",
        b"GET /pypi/simple/#frag HTTP/1.1",
        b"get /pypi/simple/ HTTP/1.1",
        b"GET /pypi/simple/ HTTP/1.1\r\nAccept: a\r\nAccept: b",  # repeated header
        b"GET /pypi/simple/ HTTP/1.1\r\nAccept: a\r\n  folded",  # obsolete line folding
        b"GET /pypi/simple/ HTTP/1.1\r\nAccept : a",  # space before the colon
        b"GET /pypi/simple/ HTTP/1.1\r\nno colon here",
        b"GET /pypi/simple/ HTTP/1.1\r\n: empty name",
        b"GET /pypi/simple/ HTTP/1.1\nAccept: bare LF",
        b"GET /pypi/simple/ HTTP/1.1\r\nAccept: bare\rCR",
        b"GET /pypi/simple/ HTTP/1.1\r\nAccept: nul\x00",
        b"GET /pypi/simple/ HTTP/1.1\r\nContent-Length: 0",
        b"GET /pypi/simple/ HTTP/1.1\r\nTransfer-Encoding: chunked",
        b"GET /pypi/simple/ HTTP/1.1\r\nUpgrade: websocket",
        b"GET /pypi/simple/ HTTP/1.1\r\nExpect: 100-continue",
    ],
)
def test_parse_head_leaves_everything_unusual_to_aiohttp(raw: bytes) -> None:
    assert parse_head(raw) is None


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [("1.1", None, True), ("1.1", "close", False), ("1.1", "Keep-Alive, Close", False),
     ("1.0", None, False), ("1.0", "keep-alive", True)],
)
def test_keep_alive_follows_the_version_and_connection_header(version: str, connection: str | None, keep_alive: bool) -> None:
    headers = {"connection": connection} if connection else {}
    assert RequestHead("GET", "/", "", version, headers).keep_alive is keep_alive


# --- against a running server ----------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(connection: tuple[socket.socket, BinaryIO]) -> None:
    sock, stream = connection
    path = file_path(connection, "gamma")
    sock.sendall(
        get("/pypi/simple/alpha/", f"Accept: {PIP_ACCEPT}")
        + get("/pypi/simple/", "Accept: text/html")
        + get(path)
        + get(path, method="HEAD")
    )
    page, root, wheel = (read_response(stream) for _ in range(3))
    head = read_response(stream, head_request=True)
    assert page.status == 200 and json.loads(page.body)["name"] == "alpha"
    assert root.status == 200 and root.headers["content-type"].startswith("text/html") and b"alpha" in root.body
    assert wheel.status == 200 and wheel.body.startswith(b"PK")
    assert head.status == 200 and head.headers["content-length"] == str(len(wheel.body))
    assert page.headers["server"] == "reservoir" and "date" in page.headers


def test_a_head_split_across_packets_is_reassembled(connection: tuple[socket.socket, BinaryIO]) -> None:
    sock, stream = connection
    raw = get("/pypi/simple/beta/", f"Accept: {PIP_ACCEPT}")
    for start in range(0, len(raw), 7):
        sock.sendall(raw[start : start + 7])
        time.sleep(0.002)
    response = read_response(stream)
    assert response.status == 200 and json.loads(response.body)["name"] == "beta"


def test_the_first_unhandled_request_hands_the_connection_to_aiohttp(connection: tuple[socket.socket, BinaryIO]) -> None:
    sock, stream = connection
    # Fast, then aiohttp (a redirect, an admin page, a range, a 404), then fast again on the same socket.
    path = file_path(connection, "gamma")
    sock.sendall(
        get("/pypi/simple/Alpha/")
        + get("/healthz")
        + get(path, "Range: bytes=0-1")
        + get("/pypi/simple/nonexistent/")
        + get("/pypi/simple/alpha/", "Accept: text/html")
    )
    redirect, health, partial, missing, page = (read_response(stream) for _ in range(5))
    assert redirect.status == 301 and redirect.headers["location"] == "/pypi/simple/alpha/"
    assert health.status == 200 and json.loads(health.body) == {"status": "ok"}
    assert partial.status == 206 and partial.body == b"PK"
    assert missing.status == 404
    assert page.status == 200 and b"alpha" in page.body
    assert "aiohttp" in redirect.headers["server"]


def test_requests_with_a_body_or_a_bad_head_get_aiohttps_answer(served: RunningServer) -> None:
    parts = urlsplit(served.url)
    cases = {
        b"POST /pypi/simple/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc": 405,
        b"GET /pypi/simple/ HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n": 400,
        b"GET /pypi/simple/ HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * (20 << 10) + b"\r\n\r\n": 431,
    }
    for raw, expected in cases.items():
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(raw)
            response = read_response(sock.makefile("rb"))
            assert response.status in (expected, 400), (raw[:40], response.status)


def test_connection_close_and_http_1_0(served: RunningServer) -> None:
    parts = urlsplit(served.url)
    for raw, expect_header in (
        (get("/pypi/simple/", "Connection: close"), "close"),
        (get("/pypi/simple/", version="1.0"), "close"),
    ):
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(raw)
            stream = sock.makefile("rb")
            response = read_response(stream)
            assert response.status == 200 and response.headers["connection"] == expect_header
            assert stream.read() == b""  # the server closed its side
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        stream = sock.makefile("rb")
        for _ in range(2):
            sock.sendall(get("/pypi/simple/", "Connection: keep-alive", version="1.0"))
            response = read_response(stream)
            assert response.status == 200 and response.headers["connection"] == "keep-alive"


def test_fast_answers_are_logged_as_aiohttp_logs_its_own(served: RunningServer) -> None:
    parts = urlsplit(served.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        stream = sock.makefile("rb")
        sock.sendall(get("/pypi/simple/alpha/?x=1", f"Accept: {PIP_ACCEPT}", "User-Agent: fast/1") + get("/healthz", "User-Agent: slow/1"))
        fast, slow = read_response(stream), read_response(stream)
    deadline = time.monotonic() + 10
    while len(served.access_lines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    fast_line = next(line for line in served.access_lines() if '"fast/1"' in line)
    slow_line = next(line for line in served.access_lines() if '"slow/1"' in line)
    shape = re.compile(r'^127\.0\.0\.1 \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET \S+ HTTP/1\.1" (\d{3}) (\d+) "([^"]*)" "([^"]*)"$')
    fast_match, slow_match = shape.match(fast_line), shape.match(slow_line)
    assert fast_match and slow_match, (fast_line, slow_line)
    assert '"GET /pypi/simple/alpha/?x=1 HTTP/1.1" 200' in fast_line
    # Bytes sent, head included: what aiohttp's access logger counts for its %b.
    assert fast_match.group(2) == str(fast.wire_bytes) and fast_match.group(3) == PIP_ACCEPT
    assert slow_match.group(2) == str(slow.wire_bytes) and slow_match.group(3) == "-"


class _IdleTransport:
    def __init__(self) -> None:
        self.closed = False
        self.buffered = 0

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 1) if name == "peername" else None

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def close(self) -> None:
        self.closed = True


def test_idle_connections_are_closed_unless_still_sending() -> None:
    fast_path = FastPath(answers=None, fallback=lambda: None, keepalive_s=10)  # type: ignore[arg-type]
    quiet, sending, recent = (StaticIndexProtocol(fast_path) for _ in range(3))
    transports = [_IdleTransport() for _ in range(3)]
    for protocol, transport in zip((quiet, sending, recent), transports):
        protocol.connection_made(transport)  # type: ignore[arg-type]
    transports[1].buffered = 1 << 20
    now = time.monotonic()
    quiet.last_active = sending.last_active = now - 60
    fast_path.close_idle(now)
    assert [t.closed for t in transports] == [True, False, False]
    assert len(fast_path.connections) == 3  # each leaves the set when its transport reports the close
