"""A static PyPI-style upstream index for tests: written to disk, served on 127.0.0.1.

`write_index` lays out a "simple" repository the way a static mirror does::

    <root>/simple/index.html                     the project list
    <root>/simple/index.json                     the PEP 691 JSON project list
    <root>/simple/<project>/index.html           PEP 503 HTML (always)
    <root>/simple/<project>/index.json           PEP 691 JSON (json=True)
    <root>/files/<filename>                      the package files
    <root>/files/<filename>.metadata             PEP 658 metadata (metadata=True)

It is usable as a `file://` index as it stands (`IndexTree.file_url`), and
`serve_index` serves the same tree over HTTP with PEP 691 content
negotiation, ETag / If-None-Match (304) and counters of what was asked, so
tests can assert that a re-sync downloaded nothing. With `serials=True` it
also keeps a serial per project, bumped when the project's page changes,
and shows it as PyPI does: `_last-serial` in the JSON root and pages, and
the `X-PyPI-Last-Serial` header. `IndexTree.stall`
makes the server hold a file's response until released, for kill tests;
`RunningIndex.flaky` makes it answer 503 a given number of times first.

Files are read from disk on each request, so a test can change the tree
(add a release, corrupt a file) between syncs with `write_index` again or by
editing files.
"""

from __future__ import annotations

import hashlib
import html
import json
import shutil
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def project_of(filename: str) -> str:
    if filename.endswith(".whl"):
        return canonicalize_name(parse_wheel_filename(filename)[0])
    return canonicalize_name(parse_sdist_filename(filename)[0])


def wheel_metadata(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return archive.read(name)


@dataclass
class IndexTree:
    root: Path

    @property
    def simple(self) -> Path:
        return self.root / "simple"

    @property
    def files(self) -> Path:
        return self.root / "files"

    @property
    def file_url(self) -> str:
        return self.simple.as_uri() + "/"

    @property
    def serials_file(self) -> Path:
        return self.root / "serials.json"

    def page(self, project: str, kind: str = "html") -> Path:
        return self.simple / canonicalize_name(project) / f"index.{kind}"


def write_index(
    root: Path,
    packages: list[Path],
    *,
    json_pages: bool = True,
    metadata: bool = True,
    yanked: dict[str, str] | None = None,
    requires_python: dict[str, str] | None = None,
    serials: bool = False,
) -> IndexTree:
    """Write (or rewrite) an index over `packages`; files are copied in.

    `yanked` maps a filename to its yank reason ("" for none);
    `requires_python` maps a filename to its data-requires-python.
    Files already in the tree stay listed, so calling it again with new
    packages adds releases.
    """
    tree = IndexTree(root)
    tree.files.mkdir(parents=True, exist_ok=True)
    for package in packages:
        if package.resolve() != (tree.files / package.name).resolve():
            shutil.copyfile(package, tree.files / package.name)
    yanked = yanked or {}
    requires_python = requires_python or {}
    by_project: dict[str, list[Path]] = {}
    for path in sorted(tree.files.iterdir()):
        if path.name.endswith((".whl", ".tar.gz", ".zip")):
            by_project.setdefault(project_of(path.name), []).append(path)
    if tree.simple.exists():
        shutil.rmtree(tree.simple)
    tree.simple.mkdir(parents=True)
    state = _load_serials(tree) if serials else None
    for project, paths in by_project.items():
        folder = tree.simple / project
        folder.mkdir()
        entries = []
        for path in paths:
            entry: dict[str, object] = {
                "filename": path.name,
                "url": f"../../files/{path.name}",
                "hashes": {"sha256": sha256_of(path)},
                "size": path.stat().st_size,
                "upload-time": "2025-01-01T00:00:00.000000Z",
                "yanked": yanked.get(path.name, False) if path.name not in yanked else (yanked[path.name] or True),
            }
            if path.name in requires_python:
                entry["requires-python"] = requires_python[path.name]
            if metadata and path.name.endswith(".whl"):
                meta_path = tree.files / f"{path.name}.metadata"
                meta_path.write_bytes(wheel_metadata(path))
                entry["core-metadata"] = {"sha256": sha256_of(meta_path)}
            entries.append(entry)
        (folder / "index.html").write_text(_html_page(project, entries))
        meta: dict[str, object] = {"api-version": "1.1"}
        if state is not None:
            meta["_last-serial"] = _serial_of(state, project, entries)
        if json_pages:
            page = {"meta": meta, "name": project, "files": entries, "versions": []}
            (folder / "index.json").write_text(json.dumps(page, indent=1))
    links = "\n".join(f'<a href="{p}/">{p}</a>' for p in sorted(by_project))
    (tree.simple / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}\n</body></html>\n")
    root: dict[str, object] = {"meta": {"api-version": "1.1"}, "projects": [{"name": p} for p in sorted(by_project)]}
    if state is not None:
        root["meta"] = {"api-version": "1.1", "_last-serial": state["last"]}
        root["projects"] = [{"name": p, "_last-serial": state["projects"][p][1]} for p in sorted(by_project)]
        tree.serials_file.write_text(json.dumps(state))
    else:
        tree.serials_file.unlink(missing_ok=True)
    (tree.simple / "index.json").write_text(json.dumps(root))
    return tree


def _load_serials(tree: IndexTree) -> dict[str, Any]:
    try:
        return dict(json.loads(tree.serials_file.read_text()))
    except FileNotFoundError:
        return {"last": 0, "projects": {}}


def _serial_of(state: dict[str, Any], project: str, entries: list[dict[str, object]]) -> int:
    """The project's serial: the upstream's next one when its page changed, else the one it had."""
    digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
    known = state["projects"].get(project)
    if known is None or known[0] != digest:
        state["last"] += 1
        state["projects"][project] = [digest, state["last"]]
    return int(state["projects"][project][1])


def serial_of(tree: IndexTree, project: str) -> int | None:
    """What the upstream says is `project`'s serial (None without serials)."""
    if not tree.serials_file.is_file():
        return None
    known = json.loads(tree.serials_file.read_text())["projects"].get(canonicalize_name(project))
    return int(known[1]) if known else None


def _html_page(project: str, entries: list[dict[str, object]]) -> str:
    links = []
    for entry in entries:
        attrs = [f'href="{entry["url"]}#sha256={entry["hashes"]["sha256"]}"']  # type: ignore[index]
        if "requires-python" in entry:
            attrs.append(f'data-requires-python="{html.escape(str(entry["requires-python"]))}"')
        if entry["yanked"] is not False:
            reason = entry["yanked"] if isinstance(entry["yanked"], str) else ""
            attrs.append(f'data-yanked="{html.escape(reason)}"')
        if "core-metadata" in entry:
            attrs.append(f'data-core-metadata="sha256={entry["core-metadata"]["sha256"]}"')  # type: ignore[index]
        links.append(f"<a {' '.join(attrs)}>{entry['filename']}</a><br/>")
    body = "\n".join(links)
    return f"<!DOCTYPE html><html><head><title>Links for {project}</title></head><body>\n{body}\n</body></html>\n"


@dataclass
class RunningIndex:
    tree: IndexTree
    port: int
    requests: Counter[str] = field(default_factory=Counter)  # "root", "page", "304", "file", "metadata"
    stall: set[str] = field(default_factory=set)  # filenames whose responses wait for `released`
    released: threading.Event = field(default_factory=threading.Event)
    flaky: dict[str, int] = field(default_factory=dict)  # filename: how many 503s to answer first
    offer_json: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple/"

    def count(self, kind: str) -> int:
        with self.lock:
            return self.requests[kind]

    def total(self) -> int:
        """Every request answered since the last reset, of any kind."""
        with self.lock:
            return sum(self.requests.values())

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()


def _handler(state: RunningIndex) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

        def _bump(self, kind: str) -> None:
            with state.lock:
                state.requests[kind] += 1

        def _send(self, status: int, body: bytes, content_type: str, etag: str | None = None,
                  serial: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if etag:
                self.send_header("ETag", etag)
            if serial is not None:
                self.send_header("X-PyPI-Last-Serial", str(serial))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = unquote(urlsplit(self.path).path)
            parts = [p for p in path.split("/") if p]
            if ".." in parts:
                return self._send(400, b"bad path", "text/plain")
            if parts == ["simple"]:
                return self._root()
            if parts[:1] == ["simple"] and len(parts) == 2:
                return self._page(parts[1])
            if parts[:1] == ["files"] and len(parts) == 2:
                return self._file(parts[1])
            self._send(404, b"not found", "text/plain")

        def _root(self) -> None:
            return self._serve(state.tree.simple, "root", None)

        def _page(self, project: str) -> None:
            return self._serve(state.tree.simple / project, "page", serial_of(state.tree, project))

        def _serve(self, folder: Path, kind: str, serial: int | None) -> None:
            want_json = state.offer_json and JSON_TYPE in self.headers.get("Accept", "")
            page = folder / ("index.json" if want_json else "index.html")
            if want_json and not page.exists():
                page = folder / "index.html"
            if not page.is_file():
                self._bump(kind)
                return self._send(404, b"not found", "text/plain")
            body = page.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            if self.headers.get("If-None-Match") == etag:
                self._bump("304" if kind == "page" else f"{kind}-304")
                self.send_response(304)
                self.send_header("ETag", etag)
                if serial is not None:
                    self.send_header("X-PyPI-Last-Serial", str(serial))
                self.end_headers()
                return None
            self._bump(kind)
            content_type = JSON_TYPE if page.name == "index.json" else "text/html; charset=utf-8"
            return self._send(200, body, content_type, etag, serial)

        def _file(self, name: str) -> None:
            self._bump("metadata" if name.endswith(".metadata") else "file")
            if name in state.stall:
                state.released.wait(60)
            with state.lock:
                failing = state.flaky.get(name, 0)
                if failing:
                    state.flaky[name] = failing - 1
            if failing:
                return self._send(503, b"try again", "text/plain")
            path = state.tree.files / name
            if not path.is_file():
                return self._send(404, b"not found", "text/plain")
            return self._send(200, path.read_bytes(), "application/octet-stream")

    return Handler


@contextmanager
def serve_index(tree: IndexTree) -> Iterator[RunningIndex]:
    """Serve `tree` on 127.0.0.1 (a free port) until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(RunningIndex(tree, 0)))
    server.daemon_threads = True
    state = RunningIndex(tree, int(server.server_address[1]))
    server.RequestHandlerClass = _handler(state)
    thread = threading.Thread(target=server.serve_forever, name="pypi-index", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
