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

SERVER_LINE = b"Server: reservoir\r\n"


def header_block(headers: dict[str, str], content_length: int | None) -> bytes:
    """`Name: value` lines, each ending in CRLF, plus Content-Length when given."""
    lines = [f"{name}: {value}\r\n" for name, value in headers.items()]
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}\r\n")
    return "".join(lines).encode("latin-1")


def status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode("ascii")


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
