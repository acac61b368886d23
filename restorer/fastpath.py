"""The hot path of `reservoir serve`: index pages and package files, straight from memory.

A client installing packages sends the same few requests thousands of
times: a project page with pip's or uv's Accept header, and the files it
names. They are answered here, on the event loop's own protocol, from the
worker's page and file caches with header lines encoded once per entry, so a
request costs a parse, two dictionary lookups and one write. aiohttp's
request cycle (request object, router, middleware, response object) cost
about four times as much per request on the same machine (BENCHMARKS.md).

Request heads are read with aiohttp's own parser (llhttp, with aiohttp's
checks and limits), never by hand: a head is accepted, refused or framed
here exactly as aiohttp would, because it is the same code.

Everything else goes to aiohttp, byte for byte, on the same connection:
the first request this path does not answer itself (an admin page, a
redirect, a 404, a Range or conditional file request, a large file for
sendfile, a request with a body, a failed login, another HTTP version,
anything the parser refuses) hands the connection over to aiohttp's request
handler, with that request and everything after it. So every answer but
the plainest 200 and 304 comes from one implementation, and a client cannot
tell which path answered.

This path also bounds what one client can hold: the time to send one
request head, and the connections open at once from one address.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import parse_qs, unquote

from aiohttp.base_protocol import BaseProtocol
from aiohttp.http import HttpRequestParser, HttpVersion10, HttpVersion11, RawRequestMessage
from aiohttp.http_exceptions import HttpProcessingError

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
from restorer.wire import SERVER_LINE, DateHeader, closing_answer, status_line

# aiohttp's own limits for a request head, given to both layers so that both refuse the same heads.
HEAD_LIMITS = {"max_line_size": 8190, "max_field_size": 8190, "max_headers": 128}
# Headers whose presence means the request is not a plain GET of a static page or file.
HAND_OFF_HEADERS = ("Content-Length", "Transfer-Encoding", "Upgrade", "Expect")
VERSIONS = {HttpVersion11: "1.1", HttpVersion10: "1.0"}
# aiohttp answers in the request's own version.
STATUS_LINES = {(version, status): status_line(status, version) for version in ("1.0", "1.1") for status in (200, 304)}
# As aiohttp writes it: only what differs from the version's default.
CONNECTION_LINES = {
    ("1.1", True): b"",
    ("1.1", False): b"Connection: close\r\n",
    ("1.0", True): b"Connection: keep-alive\r\n",
    ("1.0", False): b"",
}


@dataclass(slots=True)  # not frozen: made per request, and frozen init costs more
class RequestHead:
    method: str
    path: str  # as sent, before any `?`
    query: str
    version: str  # "1.1" or "1.0"
    headers: Mapping[str, str]  # aiohttp's own (case-insensitive), as its handlers see them
    keep_alive: bool


def plain_head(message: RawRequestMessage) -> RequestHead | None:
    """The head of a parsed request this path may answer, or None when it must go to aiohttp.

    Only a GET or HEAD of an origin-form target over HTTP/1.0 or 1.1, with
    no body, upgrade or expectation.
    """
    version = VERSIONS.get(message.version)
    if version is None or message.method not in ("GET", "HEAD") or message.upgrade or message.chunked:
        return None
    headers = message.headers
    if any(name in headers for name in HAND_OFF_HEADERS):
        return None
    target = message.path
    if target[:1] != "/" or "#" in target:
        return None
    path, _, query = target.partition("?")
    return RequestHead(message.method, path, query, version, headers, not message.should_close)


@dataclass(slots=True)
class Answer:
    status: int  # 200 or 304
    header_block: bytes  # all lines but the status line, Date and Connection, each ending in CRLF
    body: bytes


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
            return Answer(304, page.wire_not_modified, b"")
        return Answer(200, page.wire, page.body)

    def _file(self, rest: str, head: RequestHead) -> Answer | None:
        sha256, slash, filename = rest.partition("/")
        relative = file_relative(sha256, unquote(filename) if "%" in filename else filename) if slash else None
        if relative is None or any(h in head.headers for h in REGULAR_PATH_HEADERS):
            return None
        generation = self.state.live.generation()
        if generation is None:
            return None
        cached = self.state.files.get(generation, relative, FILE_HEADERS)
        if cached is None:
            return None  # missing, or large enough for sendfile
        return Answer(200, cached.wire, cached.body)


@dataclass(frozen=True)
class ClientLimits:
    """What one client may hold in one worker ([server] in reservoir.toml)."""

    head_timeout_s: float = 15.0  # to send one whole request head, from its first byte
    max_connections: int = 128  # open at once from one address
    keepalive_s: float = 75.0  # idle between requests


@dataclass
class FastPath:
    """One worker's fast path: its open connections and what they share."""

    answers: IndexAnswers
    # Makes the aiohttp protocol a connection is handed to (an aiohttp `web.Server`).
    fallback: Callable[[], asyncio.Protocol]
    access_log: logging.Logger | None = None
    limits: ClientLimits = field(default_factory=ClientLimits)
    connections: set[StaticIndexProtocol] = field(default_factory=set)
    # Open connections per client address, handed-over ones included.
    per_client: dict[str, int] = field(default_factory=dict)
    date: DateHeader = field(default_factory=DateHeader)

    def protocol(self) -> StaticIndexProtocol:
        return StaticIndexProtocol(self)

    def admit(self, client: str) -> bool:
        """Counts a new connection from `client`, unless it already holds as many as it may."""
        open_now = self.per_client.get(client, 0)
        if open_now >= self.limits.max_connections:
            return False
        self.per_client[client] = open_now + 1
        return True

    def release(self, client: str) -> None:
        open_now = self.per_client.get(client, 0) - 1
        if open_now > 0:
            self.per_client[client] = open_now
        else:
            self.per_client.pop(client, None)

    def close_idle(self, now: float) -> None:
        for connection in list(self.connections):
            connection.close_if_idle(now, self.limits.keepalive_s)

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
        self._parser: HttpRequestParser | None = None
        self._buffer = b""  # from the first byte of the request not answered yet
        self._fed = 0  # how much of it the parser has read
        self._write_paused = False
        self._peer = "-"
        self._counted = False  # in fast_path.per_client
        self.last_active = time.monotonic()
        self._head_started = self.last_active
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        fast_path = self._fast_path
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else "-"
        if not fast_path.admit(self._peer):
            transport.write(closing_answer(503, "too many connections from this address: retry later", fast_path.date))
            transport.close()
            return
        self._counted = True
        self._transport = transport
        # A body the parser reads is never read back: its streams get a protocol of their own, detached from
        # the transport, and a limit they never reach.
        loop = asyncio.get_running_loop()
        self._parser = HttpRequestParser(BaseProtocol(loop), loop, 1 << 30, **HEAD_LIMITS)
        fast_path.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fast_path.connections.discard(self)
        self._transport = None
        self._stop_deadline()
        if self._counted:
            self._counted = False
            self._fast_path.release(self._peer)

    def data_received(self, data: bytes) -> None:
        self.last_active = now = time.monotonic()
        if self._buffer:
            self._buffer += data
        else:
            self._buffer = data
            self._head_started = now
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
        """Answers the whole heads buffered, or hands the connection over at the first it does not answer.

        Like aiohttp, which parses all that one read brought at once and answers
        only 400 when any of it is refused, nothing is written for this read's
        heads until the rest of what it brought has parsed without error.
        """
        buffer, transport, parser = self._buffer, self._transport, self._parser
        if not buffer or transport is None or parser is None or self._write_paused:
            return
        answers = self._fast_path.answers
        answered: list[tuple[RequestHead, Answer]] = []
        start = 0  # of the first request not answered
        fed = self._fed  # bytes of the buffer the parser has read
        hand_off = False
        try:
            while True:
                # Fed up to the first CRLFCRLF: llhttp reads no bare LF as a line end, so a head it completes
                # there ends there, and whatever follows belongs to the next request.
                end = buffer.find(b"\r\n\r\n", fed - 3 if fed - 3 > start else start)
                if end < 0:
                    if fed < len(buffer):
                        hand_off = bool(parser.feed_data(buffer[fed:])[0])  # a head without CRLFCRLF: HTTP/0.9
                        fed = len(buffer)
                    break
                stop = end + 4
                messages = parser.feed_data(buffer[fed:stop])[0] if stop > fed else ()
                fed = stop
                head = plain_head(messages[0][0]) if len(messages) == 1 else None
                answer = answers.answer(head) if head is not None else None
                if head is None or answer is None:
                    hand_off = True
                    break
                answered.append((head, answer))
                start = stop
                if stop == len(buffer):
                    break
            if hand_off and fed < len(buffer):
                parser.feed_data(buffer[fed:])  # read only to learn whether aiohttp refuses something here
        except HttpProcessingError:
            answered.clear()  # aiohttp parses all of it again and answers 400, 413 or 431 alone
            start, hand_off = 0, True
        if answered:
            self._write(transport, answered)
            self._head_started = self.last_active
            self._stop_deadline()
        if hand_off:
            self._buffer = b""
            self._hand_off(buffer[start:])
        elif answered and not answered[-1][0].keep_alive:
            # Bytes after a closing request would have made llhttp refuse them all: there are none.
            transport.close()
            self._buffer = b""
        else:
            self._buffer = buffer[start:]
            self._fed = fed - start
            if self._buffer:
                self._await_head()

    def _write(self, transport: asyncio.Transport, answered: list[tuple[RequestHead, Answer]]) -> None:
        fast_path = self._fast_path
        date = SERVER_LINE + fast_path.date.line()
        chunks: list[bytes] = []
        for head, answer in answered:
            lines = STATUS_LINES[head.version, answer.status] + date + CONNECTION_LINES[head.version, head.keep_alive]
            lines += answer.header_block + b"\r\n"
            chunks.append(lines)
            body = answer.body if head.method == "GET" else b""
            if body:
                chunks.append(body)
            if fast_path.access_log is not None:
                fast_path.log(self._peer, head, answer, len(lines) + len(body))
        if len(chunks) == 1:
            transport.write(chunks[0])
        else:
            transport.writelines(chunks)

    def _await_head(self) -> None:
        """Starts the clock on an incomplete head (once per head: a whole head in one read never starts it)."""
        if self._deadline is None:
            remaining = self._head_started + self._fast_path.limits.head_timeout_s - time.monotonic()
            self._deadline = asyncio.get_running_loop().call_later(max(remaining, 0.0), self._head_timed_out)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timed_out(self) -> None:
        self._deadline = None
        transport = self._transport
        if transport is None or not self._buffer:
            return
        seconds = f"{self._fast_path.limits.head_timeout_s:g}"
        message = f"the request head did not arrive within {seconds} s"
        transport.write(closing_answer(408, message, self._fast_path.date))
        transport.close()
        self._buffer = b""
        self._parser = None

    def _hand_off(self, pending: bytes) -> None:
        """aiohttp takes the connection over, starting with `pending` (the request this path does not answer)."""
        transport = self._transport
        assert transport is not None
        fast_path = self._fast_path
        self._stop_deadline()
        fast_path.connections.discard(self)
        self._transport = None
        self._parser = None
        handler = fast_path.fallback()
        counted, self._counted = self._counted, False
        transport.set_protocol(HandedOver(handler, lambda: fast_path.release(self._peer)) if counted else handler)
        handler.connection_made(transport)
        handler.data_received(pending)


class HandedOver(asyncio.Protocol):
    """aiohttp's protocol for a connection this path handed over, counted against its client until it closes."""

    __slots__ = ("_handler", "_release")

    def __init__(self, handler: asyncio.Protocol, release: Callable[[], None]) -> None:
        self._handler = handler
        self._release = release

    def data_received(self, data: bytes) -> None:
        self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received()

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        self._handler.connection_lost(exc)
