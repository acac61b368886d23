"""The serve fast path: what it answers itself, and that everything else reaches aiohttp intact.

Raw sockets against a real `reservoir serve`, so pipelining, split heads,
hand-over in the middle of a connection and connection handling are seen
as a client sees them.
"""

from __future__ import annotations

import asyncio
import json
import re
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlsplit

import pytest

from aiohttp.http import HttpRequestParser

from reservoir.context import AppContext
from restorer.fastpath import HEAD_LIMITS, Answer, ClientLimits, FastPath, RequestHead, StaticIndexProtocol, plain_head
from restorer.publish import publish_site
from tests.support.rawhttp import exchange, port_of, serve_with, wait_for
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


# --- plain_head: which parsed heads the fast path answers itself ------------------------------


def parsed(raw: bytes) -> RequestHead | None:
    """The head as the fast path sees it: read by aiohttp's own parser, then sorted."""
    parser = HttpRequestParser(None, asyncio.new_event_loop(), 1 << 16, **HEAD_LIMITS)
    messages, _, _ = parser.feed_data(raw + b"\r\n\r\n")
    assert len(messages) == 1
    return plain_head(messages[0][0])


def test_plain_head_reads_a_plain_get() -> None:
    head = parsed(b"GET /pypi/simple/alpha/?format=x HTTP/1.1\r\nHost: h\r\nAccept:  text/html \r\nX-Empty:")
    assert head is not None
    assert (head.method, head.path, head.query, head.version, head.keep_alive) == ("GET", "/pypi/simple/alpha/", "format=x", "1.1", True)
    assert head.headers["accept"] == "text/html" and head.headers["X-EMPTY"] == ""
    head = parsed(b"HEAD / HTTP/1.0")
    assert head is not None and (head.method, head.version, head.keep_alive) == ("HEAD", "1.0", False)


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /pypi/simple/ HTTP/1.1\r\nHost: x",
        b"OPTIONS * HTTP/1.1\r\nHost: x",
        b"GET http://elsewhere/pypi/simple/ HTTP/1.1\r\nHost: x",
        b"GET /pypi/simple/ HTTP/2.0\r\nHost: x",
        b"GET /pypi/simple/#frag HTTP/1.1\r\nHost: x",
        b"GET /pypi/simple/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0",
        b"GET /pypi/simple/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked",
        b"GET /pypi/simple/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket",
        b"GET /pypi/simple/ HTTP/1.1\r\nHost: x\r\nExpect: 100-continue",
    ],
)
def test_plain_head_leaves_everything_unusual_to_aiohttp(raw: bytes) -> None:
    assert parsed(raw) is None


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [("1.1", None, True), ("1.1", "close", False), ("1.1", "Keep-Alive, Close", False),
     ("1.0", None, False), ("1.0", "keep-alive", True)],
)
def test_keep_alive_follows_the_version_and_connection_header(version: str, connection: str | None, keep_alive: bool) -> None:
    raw = f"GET / HTTP/{version}\r\nHost: x" + (f"\r\nConnection: {connection}" if connection else "")
    head = parsed(raw.encode())
    assert head is not None and head.keep_alive is keep_alive


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
    assert redirect.headers["server"] == page.headers["server"] == "reservoir"  # neither layer names its version


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
    # As aiohttp answers: `close` on 1.1, and nothing on 1.0, where closing is the default.
    for raw, expect_header in (
        (get("/pypi/simple/", "Connection: close"), "close"),
        (get("/pypi/simple/", version="1.0"), None),
    ):
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(raw)
            stream = sock.makefile("rb")
            response = read_response(stream)
            assert response.status == 200 and response.headers.get("connection") == expect_header
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


class _FakeTransport:
    def __init__(self, peer: str = "127.0.0.1") -> None:
        self.closed = False
        self.buffered = 0
        self.written = b""
        self.peer = peer

    def get_extra_info(self, name: str) -> object:
        return (self.peer, 1) if name == "peername" else None

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        self.written += data

    def writelines(self, chunks: tuple[bytes, ...]) -> None:
        self.written += b"".join(chunks)

    def close(self) -> None:
        self.closed = True


@dataclass
class _OneAnswer:
    """Answers every request with the same page, and counts them."""

    asked: int = 0

    def answer(self, head: RequestHead) -> Answer:
        self.asked += 1
        return Answer(200, b"Content-Length: 2\r\n", b"ok")


def test_plain_heads_are_answered_without_aiohttp() -> None:
    async def scenario() -> None:
        answers = _OneAnswer()
        fast_path = FastPath(answers=answers, fallback=lambda: pytest.fail("handed to aiohttp"))  # type: ignore[arg-type]
        protocol, transport = fast_path.protocol(), _FakeTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        raw = get("/a") + get("/b", method="HEAD") + get("/c", version="1.0")
        for start in range(0, len(raw), 5):  # split heads, pipelined heads
            protocol.data_received(raw[start : start + 5])
        assert answers.asked == 3 and transport.closed
        assert transport.written.count(b"HTTP/1.1 200 OK\r\n") == 2 and transport.written.count(b"HTTP/1.0 200 OK\r\n") == 1
        assert transport.written.count(b"\r\n\r\nok") == 2  # no body for HEAD

    asyncio.run(scenario())


def test_idle_connections_are_closed_unless_still_sending() -> None:
    async def scenario() -> None:
        fast_path = FastPath(answers=None, fallback=lambda: None, limits=ClientLimits(keepalive_s=10))  # type: ignore[arg-type]
        quiet, sending, recent = (StaticIndexProtocol(fast_path) for _ in range(3))
        transports = [_FakeTransport() for _ in range(3)]
        for protocol, transport in zip((quiet, sending, recent), transports):
            protocol.connection_made(transport)  # type: ignore[arg-type]
        transports[1].buffered = 1 << 20
        now = time.monotonic()
        quiet.last_active = sending.last_active = now - 60
        fast_path.close_idle(now)
        assert [t.closed for t in transports] == [True, False, False]
        assert len(fast_path.connections) == 3  # each leaves the set when its transport reports the close

    asyncio.run(scenario())


# --- what one client may hold ------------------------------------------------------------------


@pytest.fixture
def published(site: AppContext) -> AppContext:
    publish_site(site)
    return site


def test_a_head_sent_too_slowly_is_answered_408_and_closed(published: AppContext) -> None:
    with serve_with(published.home.root, "head_timeout = 1") as server:
        parts = urlsplit(server.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
            sock.sendall(b"GET /pypi/simple/ HTTP/1.1\r\nHost: x\r\n")
            stream = sock.makefile("rb")
            # One header line at a time, each well within the keep-alive timeout: the head as a whole is late.
            for _ in range(100):
                if select.select([sock], [], [], 0.1)[0]:
                    break  # the answer came
                sock.sendall(b"X-Drip: 1\r\n")
            response = read_response(stream)
            assert response.status == 408 and response.headers["server"] == "reservoir"
            assert stream.read() == b""  # closed
        # A whole head is not held to the clock of an earlier one.
        reply = exchange(port_of(server), get("/pypi/simple/", "Connection: close"))
        assert [r.status for r in reply.replies] == [200]


def test_connections_per_client_address_are_capped(published: AppContext) -> None:
    with serve_with(published.home.root, "max_connections_per_client = 3") as server:
        parts = urlsplit(server.url)
        held = [socket.create_connection((parts.hostname, parts.port), timeout=10) for _ in range(2)]
        # One of them handed over to aiohttp (a request the fast path does not answer) still counts.
        held.append(socket.create_connection((parts.hostname, parts.port), timeout=10))
        held[2].sendall(get("/healthz"))
        assert read_response(held[2].makefile("rb")).status == 200
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            refused = sock.makefile("rb").read()  # sent unasked, then closed
        assert refused.startswith(b"HTTP/1.1 503 ") and b"\r\nServer: reservoir\r\n" in refused
        held.pop().close()
        assert wait_for(lambda: [r.status for r in exchange(port_of(server), get("/pypi/simple/", "Connection: close")).replies] == [200])
        for sock in held:
            sock.close()
