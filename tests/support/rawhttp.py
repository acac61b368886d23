"""Raw HTTP/1.1 exchanges with a running `reservoir serve`, to compare its two serving layers.

Two servers over one published site: the usual one (fast path in front of
aiohttp) and one with `[server] fast_path = false` (aiohttp alone, the
reference). The same bytes go to both; what comes back is reduced to what a
client or a proxy in front acts on: statuses, framing and whether the
connection stays open.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reservoir.context import AppContext
from reservoir.home import create_home
from reservoir.models import Channel
from restorer.publish import publish_site
from tests.support.site import RunningServer, add_file, run_server


@dataclass(frozen=True)
class Reply:
    status: int
    version: str  # of the status line
    headers: dict[str, str]  # lower-case names
    content_length: str | None
    chunked: bool
    body: bytes

    @property
    def framing(self) -> tuple[object, ...]:
        connection = self.headers.get("connection", "").lower() or None
        return (self.status, self.version, self.content_length, self.chunked, len(self.body), connection)


@dataclass(frozen=True)
class Exchange:
    replies: tuple[Reply, ...]
    closed: bool  # the server closed the connection (rather than leaving it open)
    unparsed: bytes  # received bytes that are no whole answer

    @property
    def framing(self) -> tuple[object, ...]:
        return (tuple(r.framing for r in self.replies), self.closed, len(self.unparsed))


def _chunked_length(data: bytes, pos: int) -> int | None:
    """Bytes a chunked body takes from `pos`, or None when it is cut short."""
    start = pos
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            return None
        size = int(data[pos:end].split(b";")[0], 16)
        pos = end + 2 + size + 2
        if pos > len(data):
            return None
        if size == 0:
            return pos - start


def parse_replies(data: bytes, *, first_is_head: bool = False) -> tuple[tuple[Reply, ...], bytes]:
    replies: list[Reply] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        lines = data[pos:end].decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ")[:2]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body_start = end + 4
        code = int(status)
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if (first_is_head and not replies) or code in (204, 304) or code < 200:
            length: int | None = 0
        elif "content-length" in headers:
            length = int(headers["content-length"])
        elif chunked:
            length = _chunked_length(data, body_start)
        else:
            length = len(data) - body_start
        if length is None or body_start + length > len(data):
            break
        body = data[body_start : body_start + length]
        replies.append(Reply(code, version, headers, headers.get("content-length"), chunked, body))
        pos = body_start + length
    return tuple(replies), data[pos:]


def exchange(port: int, raw: bytes, *, first_is_head: bool = False, wait_s: float = 5.0) -> Exchange:
    """Sends `raw` on a new connection and reads until the server closes it or `wait_s` passes without a byte."""
    received = bytearray()
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        try:
            sock.sendall(raw)
        except OSError:
            pass  # refused part-way: what arrived still counts
        try:
            while chunk := sock.recv(1 << 16):
                received += chunk
            closed = True
        except TimeoutError:
            closed = False
        except ConnectionResetError:
            closed = True
    replies, rest = parse_replies(bytes(received), first_is_head=first_is_head)
    return Exchange(replies, closed, rest)


def make_site(root: Path, wheels: dict[str, Path]) -> AppContext:
    """A site holding `wheels` in one channel, published."""
    create_home(root, "site")
    app = AppContext(home_root=root)
    with app.db.transaction() as s:
        channel = Channel(name="py", kind="pypi", upstream="file:///upstream", options={})
        s.add(channel)
        s.flush()
        for path in wheels.values():
            add_file(s, app.blobs, channel, path)
    publish_site(app)
    return app


@contextmanager
def serve_with(home: Path, server_config: str) -> Iterator[RunningServer]:
    """`reservoir serve` on `home` with extra [server] lines; the config is restored once the server has read it."""
    config = home / "reservoir.toml"
    original = config.read_text()
    config.write_text(original + "\n[server]\n" + server_config + "\n")
    try:
        # The parent reads [server]'s limits before it listens, so the config is read once the port answers.
        context = run_server(home)
        server = context.__enter__()
    finally:
        config.write_text(original)
    # aiohttp logs every refused request; unread, its pipe fills and the worker blocks on the write.
    assert server.process.stderr is not None
    log = (home / "logs" / f"serve-{port_of(server)}.err").open("wb")
    threading.Thread(target=shutil.copyfileobj, args=(server.process.stderr, log), daemon=True).start()
    try:
        yield server
    finally:
        context.__exit__(None, None, None)
        log.close()


def port_of(server: RunningServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def wait_for(predicate, timeout_s: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())
