"""HTTP/1.1 response heads as bytes, for answers written straight to a transport.

Index pages and package files are answered from memory with the same
headers every time, so their header lines are encoded once, when the
entry is cached (``header_block``), and only the status line, ``Date`` and
``Connection`` are added per request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus

# The same on every answer of both layers, and without a version (restorer.serving sets aiohttp's).
SERVER = "reservoir"
SERVER_LINE = f"Server: {SERVER}\r\n".encode("ascii")


def header_block(headers: dict[str, str], content_length: int | None) -> bytes:
    """`Name: value` lines, each ending in CRLF, plus Content-Length when given."""
    lines = [f"{name}: {value}\r\n" for name, value in headers.items()]
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}\r\n")
    return "".join(lines).encode("latin-1")


def status_line(status: int, version: str = "1.1") -> bytes:
    return f"HTTP/{version} {status} {HTTPStatus(status).phrase}\r\n".encode("ascii")


def closing_answer(status: int, message: str, date: DateHeader) -> bytes:
    """A whole plain-text answer after which the connection closes (a refusal before any request is read)."""
    body = (message + "\n").encode("utf-8")
    headers = {"Content-Type": "text/plain; charset=utf-8", "Connection": "close"}
    return status_line(status) + SERVER_LINE + date.line() + header_block(headers, len(body)) + b"\r\n" + body


@dataclass
class DateHeader:
    """The `Date:` line, formatted at most once a second."""

    _second: int = -1
    _line: bytes = field(default=b"", repr=False)

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = f"Date: {formatdate(now, usegmt=True)}\r\n".encode("ascii")
        return self._line
