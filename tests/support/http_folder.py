"""Serve a folder over HTTP on 127.0.0.1, as an archive mirror would: ETags, conditional GETs, counted requests.

    with serve_folder(repo.root) as server:
        server.url              # http://127.0.0.1:PORT/
        server.requests         # every path asked, in order
        server.count("Packages")  # requests whose path contains the text
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class RunningFolder:
    root: Path
    port: int = 0
    requests: list[tuple[str, int]] = field(default_factory=list)  # (path, status)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def count(self, text: str, status: int | None = None) -> int:
        with self.lock:
            return sum(1 for path, code in self.requests if text in path and (status is None or code == status))

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()


def _handler(state: RunningFolder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

        def _answer(self, status: int, body: bytes = b"", etag: str | None = None) -> None:
            with state.lock:
                state.requests.append((unquote(urlsplit(self.path).path), status))
            self.send_response(status)
            if etag:
                self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            relative = unquote(urlsplit(self.path).path).lstrip("/")
            path = (state.root / relative).resolve()
            if state.root.resolve() not in path.parents or not path.is_file():
                self._answer(404)
                return
            body = path.read_bytes()
            etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
            if self.headers.get("If-None-Match") == etag:
                self._answer(304, etag=etag)
                return
            self._answer(200, body, etag)

    return Handler


@contextmanager
def serve_folder(root: Path) -> Iterator[RunningFolder]:
    state = RunningFolder(root)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
