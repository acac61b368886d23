"""The hot path of `reservoir serve`: index pages and package files, straight from memory.

A client installing packages sends the same few requests thousands of
times: a project page with pip's or uv's Accept header, and the files it
names. They are answered here, on the event loop's own protocol, from the
worker's page and file caches with header lines encoded once per entry, so a
request costs a parse, two dictionary lookups and one write. aiohttp's
request cycle (request object, router, middleware, response object) cost
about four times as much per request on the same machine (BENCHMARKS.md).

Everything else goes to aiohttp, byte for byte, on the same connection:
each request head is first checked here, and the first one this path does not
answer itself (an admin page, a redirect, a 404, a Range or conditional file
request, a large file for sendfile, a request with a body, a failed login,
anything malformed) hands the connection over to aiohttp's request handler,
with that request and everything after it. So every answer but the plainest
200 and 304 comes from one implementation, and a client cannot tell which
path answered.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import parse_qs, unquote

from restorer.auth import AuthMode
from restorer.server import (
    FILE_HEADERS,
    REGULAR_PATH_HEADERS,
    PageMiss,
    SiteState,
    file_relative,
    find_page,
    normalized_project,
)
from restorer.wire import SERVER_LINE, DateHeader, status_line

# aiohttp's limit for one line: a longer head goes to aiohttp, which answers it or refuses it properly.
MAX_HEAD_BYTES = 8190
# Headers whose presence means the request is not a plain GET of a static page or file.
HAND_OFF_HEADERS = ("content-length", "transfer-encoding", "upgrade", "expect")
CONDITIONAL_FILE_HEADERS = tuple(h.lower() for h in REGULAR_PATH_HEADERS)
STATUS_200 = status_line(200)
STATUS_304 = status_line(304)
KEEP_ALIVE = b"Connection: keep-alive\r\n"
CLOSE = b"Connection: close\r\n"


@dataclass(slots=True)  # not frozen: made per request, and frozen init costs more
class RequestHead:
    method: str
    path: str  # as sent, before any `?`
    query: str
    version: str  # "1.1" or "1.0"
    headers: dict[str, str]  # lower-case names

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "1.1":
            return "close" not in connection
        return "keep-alive" in connection


# RFC 9112: request-line, then field lines of a token, a colon and a value
# without CR, LF or NUL. Anything else (absolute-form targets, folded lines,
# spaces before the colon, other methods and versions) fails to match.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_HEAD_RE = re.compile(
    rf"(GET|HEAD) (/[^\x00-\x20#\x7f]*) HTTP/1\.([01])((?:\r\n{_TOKEN}:[^\x00\r\n]*)*)", re.ASCII
)
_FIELD_RE = re.compile(rf"\r\n({_TOKEN}):[ \t]*([^\x00\r\n]*)", re.ASCII)


def parse_head(raw: bytes) -> RequestHead | None:
    """One request head (without its final empty line), or None when the fast path must leave it to aiohttp.

    None for anything but a well-formed GET or HEAD of an origin-form target
    over HTTP/1.0 or 1.1 without a body: a repeated header, a folded line,
    a stray CR, LF or NUL, a header name with spaces.
    """
    text = raw.decode("latin-1")
    match = _HEAD_RE.fullmatch(text)
    if match is None:
        return None
    method, target, minor, fields = match.groups()
    pairs = _FIELD_RE.findall(fields)
    headers = {name.lower(): value.rstrip(" \t") for name, value in pairs}
    if len(headers) != len(pairs) or any(h in headers for h in HAND_OFF_HEADERS):
        return None
    path, _, query = target.partition("?")
    return RequestHead(method, path, query, "1." + minor, headers)


@dataclass(slots=True)
class Answer:
    status_line: bytes
    header_block: bytes  # all lines but Date and Connection, each ending in CRLF
    body: bytes
    status: int


@dataclass
class IndexAnswers:
    """The answers the fast path gives itself: a 200 or 304 from the caches, or None."""

    state: SiteState
    mode: AuthMode

    def answer(self, head: RequestHead) -> Answer | None:
        path = head.path
        if not path.startswith("/pypi/"):
            return None
        # Only credentials already verified: checking a password here would run scrypt on the event loop.
        if self.mode != "none" and self.state.authenticator.cached(head.headers.get("authorization")) is None:
            return None  # aiohttp's middleware checks them, or answers 401 with its realm
        if path.startswith("/pypi/simple/"):
            return self._page(path[len("/pypi/simple/") :], head)
        if path.startswith("/pypi/files/"):
            return self._file(path[len("/pypi/files/") :], head)
        return None

    def _page(self, rest: str, head: RequestHead) -> Answer | None:
        if rest == "":
            relative = "simple"
        else:
            project = rest[:-1]
            if not rest.endswith("/") or not project or "/" in project or "%" in project:
                return None
            if normalized_project(project) != project:
                return None  # a redirect to the normalized name
            relative = "simple/" + project
        format_param = None
        if head.query:
            values = parse_qs(head.query).get("format")
            format_param = values[0] if values else None
        headers = head.headers
        page = find_page(self.state, relative, headers.get("accept"), format_param, headers.get("accept-encoding"))
        if isinstance(page, PageMiss):
            return None
        if page.matches(headers.get("if-none-match")):
            return Answer(STATUS_304, page.wire_not_modified, b"", 304)
        return Answer(STATUS_200, page.wire, page.body, 200)

    def _file(self, rest: str, head: RequestHead) -> Answer | None:
        sha256, slash, filename = rest.partition("/")
        relative = file_relative(sha256, unquote(filename) if "%" in filename else filename) if slash else None
        if relative is None or any(h in head.headers for h in CONDITIONAL_FILE_HEADERS):
            return None
        generation = self.state.live.generation()
        if generation is None:
            return None
        cached = self.state.files.get(generation, relative, FILE_HEADERS)
        if cached is None:
            return None  # missing, or large enough for sendfile
        return Answer(STATUS_200, cached.wire, cached.body, 200)


@dataclass
class FastPath:
    """One worker's fast path: its open connections and what they share."""

    answers: IndexAnswers
    # Makes the aiohttp protocol a connection is handed to (an aiohttp `web.Server`).
    fallback: Callable[[], asyncio.Protocol]
    access_log: logging.Logger | None = None
    keepalive_s: float = 75.0
    connections: set[StaticIndexProtocol] = field(default_factory=set)
    date: DateHeader = field(default_factory=DateHeader)

    def protocol(self) -> StaticIndexProtocol:
        return StaticIndexProtocol(self)

    def close_idle(self, now: float) -> None:
        for connection in list(self.connections):
            connection.close_if_idle(now, self.keepalive_s)

    async def sweep_idle(self, every_s: float = 5.0) -> None:
        """Closes keep-alive connections idle for longer than `keepalive_s`, as aiohttp does its own."""
        while True:
            await asyncio.sleep(every_s)
            self.close_idle(time.monotonic())

    def close_all(self) -> None:
        for connection in list(self.connections):
            connection.close()

    def log(self, peer: str, head: RequestHead, answer: Answer, sent: int) -> None:
        assert self.access_log is not None
        # restorer.serving.ACCESS_LOG_FORMAT, as aiohttp's access logger writes it (its %b counts the head too).
        target = head.path + ("?" + head.query if head.query else "")
        self.access_log.info(
            '%s %s "%s %s HTTP/%s" %d %d "%s" "%s"',
            peer,
            time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
            head.method,
            target,
            head.version,
            answer.status,
            sent,
            head.headers.get("accept", "-"),
            head.headers.get("user-agent", "-"),
        )


class StaticIndexProtocol(asyncio.Protocol):
    """One client connection, until it closes or is handed to aiohttp."""

    def __init__(self, fast_path: FastPath) -> None:
        self._fast_path = fast_path
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._write_paused = False
        self._peer = "-"
        self.last_active = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else "-"
        self._fast_path.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fast_path.connections.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        self._buffer = self._buffer + data if self._buffer else data
        if not self._write_paused:
            self._answer_buffered()

    def pause_writing(self) -> None:
        # A slow reader: stop answering (and reading) until the kernel takes what was written.
        self._write_paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._transport is not None:
            self._transport.resume_reading()
            self._answer_buffered()

    def close_if_idle(self, now: float, idle_s: float) -> None:
        transport = self._transport
        if transport is not None and now - self.last_active > idle_s and not transport.get_write_buffer_size():
            transport.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _answer_buffered(self) -> None:
        buffer, transport, fast_path = self._buffer, self._transport, self._fast_path
        while buffer and transport is not None and not self._write_paused:
            end = buffer.find(b"\r\n\r\n")
            if end > MAX_HEAD_BYTES:
                break
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES or b"\n\n" in buffer:
                    break  # not a head this path reads: aiohttp's parser decides
                self._buffer = buffer
                return
            head = parse_head(buffer[:end])
            answer = fast_path.answers.answer(head) if head is not None else None
            if head is None or answer is None:
                break
            buffer = buffer[end + 4 :]
            keep_alive = head.keep_alive
            connection = (KEEP_ALIVE if head.version == "1.0" else b"") if keep_alive else CLOSE
            lines = answer.status_line + SERVER_LINE + fast_path.date.line() + connection + answer.header_block + b"\r\n"
            body = answer.body if head.method == "GET" else b""
            if body:
                transport.writelines((lines, body))
            else:
                transport.write(lines)
            if fast_path.access_log is not None:
                fast_path.log(self._peer, head, answer, len(lines) + len(body))
            if not keep_alive:
                transport.close()
                self._buffer = b""
                return
        else:
            self._buffer = buffer
            return
        self._buffer = b""
        self._hand_off(buffer)

    def _hand_off(self, pending: bytes) -> None:
        """aiohttp takes the connection over, starting with `pending` (the request this path does not answer)."""
        transport = self._transport
        assert transport is not None
        self._fast_path.connections.discard(self)
        self._transport = None
        handler = self._fast_path.fallback()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        handler.data_received(pending)
