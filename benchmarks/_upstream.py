"""A local PyPI-like upstream on 127.0.0.1 for the sync benchmark.

It serves a folder of real package files (or generated ones) in every shape
the two mirrors under test ask for, so both read the same upstream:

- PEP 503 HTML and PEP 691 JSON simple pages (content negotiation on
  ``Accept``), with ``#sha256=`` fragments, ``data-requires-python``,
  PEP 658/714 ``data-core-metadata`` and the ``<file>.metadata`` files;
- the JSON API ``/pypi/<project>/json`` and ``/pypi/<project>/<version>/json``
  (``info``, ``releases`` with ``url``, ``digests``, ``size``,
  ``upload_time_iso_8601``, ``yanked``..., ``last_serial``) with the
  ``X-PYPI-LAST-SERIAL`` header bandersnatch checks;
- the XML-RPC methods bandersnatch calls on ``/pypi``:
  ``list_packages_with_serial``, ``changelog_since_serial``,
  ``changelog_last_serial``, ``package_releases``;
- the files themselves under ``/packages/<sha256 split>/<filename>``
  (bandersnatch refuses file URLs outside ``/packages``).

Every response body is rendered once at start-up, so the server costs the
clients under test as little as possible. It counts the files and bytes it
hands out, so the benchmark can report what each mirror fetched.
"""

from __future__ import annotations

import asyncio
import email.parser
import hashlib
import html
import json
import logging
import tarfile
import threading
import xmlrpc.client
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import web
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

log = logging.getLogger("benchmarks.upstream")

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
SIMPLE_HTML = "application/vnd.pypi.simple.v1+html"
SERIAL_HEADER = "X-PYPI-LAST-SERIAL"
HASH_CACHE_NAME = ".sha256-cache.json"


@dataclass(frozen=True)
class CoreMetadata:
    """The fields of a METADATA / PKG-INFO file that mirrors look at."""

    name: str
    version: str
    summary: str
    license: str
    requires_python: str | None
    requires_dist: tuple[str, ...]
    classifiers: tuple[str, ...]
    raw: bytes


@dataclass(frozen=True)
class UpstreamFile:
    project: str  # PEP 503 normalized
    version: str
    filename: str
    path: Path
    sha256: str
    size: int
    packagetype: str  # bdist_wheel | sdist
    upload_time: str  # ISO 8601, UTC, "Z"
    metadata: CoreMetadata | None

    @property
    def url_path(self) -> str:
        return f"/packages/{self.sha256[:2]}/{self.sha256[2:4]}/{self.sha256[4:]}/{self.filename}"

    @property
    def metadata_sha256(self) -> str | None:
        # PyPI serves .metadata only for wheels, whose METADATA is authoritative.
        if self.packagetype != "bdist_wheel" or self.metadata is None:
            return None
        return hashlib.sha256(self.metadata.raw).hexdigest()


@dataclass
class UpstreamIndex:
    """All files of the upstream, grouped by project, with a serial per project."""

    files: dict[str, list[UpstreamFile]]
    display_names: dict[str, str]
    serials: dict[str, int]

    @property
    def last_serial(self) -> int:
        return max(self.serials.values(), default=0)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for files in self.files.values() for f in files)

    @property
    def file_count(self) -> int:
        return sum(len(files) for files in self.files.values())


@dataclass
class Counters:
    """What the server handed out since the last reset (one mirror run)."""

    requests: int = 0
    files: int = 0
    file_bytes: int = 0
    api_requests: int = 0

    def reset(self) -> None:
        self.requests = self.files = self.file_bytes = self.api_requests = 0


def parse_core_metadata(raw: bytes) -> CoreMetadata:
    msg = email.parser.BytesParser().parsebytes(raw, headersonly=True)
    return CoreMetadata(
        name=str(msg.get("Name", "")),
        version=str(msg.get("Version", "")),
        summary=str(msg.get("Summary", "") or ""),
        license=str(msg.get("License", "") or ""),
        requires_python=str(msg["Requires-Python"]) if msg.get("Requires-Python") else None,
        requires_dist=tuple(str(v) for v in msg.get_all("Requires-Dist") or ()),
        classifiers=tuple(str(v) for v in msg.get_all("Classifier") or ()),
        raw=raw,
    )


def read_wheel_metadata(path: Path) -> CoreMetadata | None:
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            parts = name.split("/")
            if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
                return parse_core_metadata(zf.read(name))
    return None


def read_sdist_metadata(path: Path) -> CoreMetadata | None:
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.count("/") == 1 and name.endswith("/PKG-INFO"):
                    return parse_core_metadata(zf.read(name))
        return None
    with tarfile.open(path) as tf:
        for member in tf.getmembers():
            if member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
                extracted = tf.extractfile(member)
                return parse_core_metadata(extracted.read()) if extracted else None
    return None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def cached_digests(folder: Path, paths: list[Path]) -> dict[str, str]:
    """sha256 per file name, remembered next to the files (keyed by size and mtime)."""
    cache_file = folder / HASH_CACHE_NAME
    try:
        cache: dict[str, list] = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    result: dict[str, str] = {}
    changed = False
    for path in paths:
        st = path.stat()
        key = [st.st_size, st.st_mtime_ns]
        entry = cache.get(path.name)
        if entry is None or entry[:2] != key:
            entry = key + [sha256_of(path)]
            cache[path.name] = entry
            changed = True
        result[path.name] = entry[2]
    if changed:
        cache_file.write_text(json.dumps(cache))
    return result


def describe_file(path: Path, sha256: str) -> UpstreamFile | None:
    """Name, version and metadata of one distribution file; None if it is not one."""
    try:
        if path.name.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(path.name)
            packagetype, metadata = "bdist_wheel", read_wheel_metadata(path)
        else:
            name, version = parse_sdist_filename(path.name)
            packagetype, metadata = "sdist", read_sdist_metadata(path)
    except (InvalidWheelFilename, InvalidSdistFilename, zipfile.BadZipFile, tarfile.TarError):
        return None
    mtime = datetime.fromtimestamp(int(path.stat().st_mtime), tz=timezone.utc)
    return UpstreamFile(
        project=canonicalize_name(name),
        version=str(version),
        filename=path.name,
        path=path,
        sha256=sha256,
        size=path.stat().st_size,
        packagetype=packagetype,
        upload_time=mtime.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        metadata=metadata,
    )


def scan_folder(folder: Path) -> UpstreamIndex:
    """Index every wheel and sdist in `folder`; serials follow sorted project names."""
    paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    digests = cached_digests(folder, paths)
    files: dict[str, list[UpstreamFile]] = {}
    display: dict[str, str] = {}
    for path in paths:
        described = describe_file(path, digests[path.name])
        if described is None:
            continue
        files.setdefault(described.project, []).append(described)
        if described.metadata is not None and described.metadata.name:
            display[described.project] = described.metadata.name
    for project in files:
        display.setdefault(project, project)
    serials = {project: i + 1 for i, project in enumerate(sorted(files))}
    return UpstreamIndex(files=files, display_names=display, serials=serials)


def versions_newest_first(files: list[UpstreamFile]) -> list[str]:
    from packaging.version import InvalidVersion, Version

    def key(v: str) -> tuple[int, Version | str]:
        try:
            return (1, Version(v))
        except InvalidVersion:
            return (0, v)

    return sorted({f.version for f in files}, key=key, reverse=True)


@dataclass
class RenderedProject:
    simple_html: bytes
    simple_json: bytes
    api_json: bytes
    version_json: dict[str, bytes]
    serial: int


def simple_html_page(display_name: str, files: list[UpstreamFile], origin: str) -> bytes:
    lines = ["<!DOCTYPE html>", "<html><head><meta name=\"pypi:repository-version\" content=\"1.1\">",
             f"<title>Links for {html.escape(display_name)}</title></head><body>",
             f"<h1>Links for {html.escape(display_name)}</h1>"]
    for f in files:
        attrs = f'href="{origin}{f.url_path}#sha256={f.sha256}"'
        if f.metadata is not None and f.metadata.requires_python:
            attrs += f' data-requires-python="{html.escape(f.metadata.requires_python)}"'
        if f.metadata_sha256:
            attrs += f' data-dist-info-metadata="sha256={f.metadata_sha256}"'
            attrs += f' data-core-metadata="sha256={f.metadata_sha256}"'
        lines.append(f"<a {attrs}>{html.escape(f.filename)}</a><br/>")
    lines.append("</body></html>")
    return "\n".join(lines).encode()


def simple_json_page(display_name: str, files: list[UpstreamFile], origin: str, serial: int) -> bytes:
    entries = []
    for f in files:
        entry: dict[str, object] = {
            "filename": f.filename,
            "url": f"{origin}{f.url_path}",
            "hashes": {"sha256": f.sha256},
            "requires-python": f.metadata.requires_python if f.metadata else None,
            "size": f.size,
            "upload-time": f.upload_time,
            "yanked": False,
        }
        if f.metadata_sha256:
            entry["core-metadata"] = {"sha256": f.metadata_sha256}
            entry["dist-info-metadata"] = {"sha256": f.metadata_sha256}
        entries.append(entry)
    page = {
        "meta": {"api-version": "1.1", "_last-serial": serial},
        "name": canonicalize_name(display_name),
        "files": entries,
        "versions": versions_newest_first(files),
    }
    return json.dumps(page).encode()


def release_file_json(f: UpstreamFile, origin: str) -> dict[str, object]:
    return {
        "filename": f.filename,
        "url": f"{origin}{f.url_path}",
        "digests": {"sha256": f.sha256, "md5": ""},
        "size": f.size,
        "packagetype": f.packagetype,
        "python_version": "py3" if f.packagetype == "bdist_wheel" else "source",
        "requires_python": f.metadata.requires_python if f.metadata else None,
        "upload_time": f.upload_time[:19],
        "upload_time_iso_8601": f.upload_time,
        "yanked": False,
        "yanked_reason": None,
        "has_sig": False,
        "comment_text": "",
    }


def info_json(display_name: str, version: str, files: list[UpstreamFile]) -> dict[str, object]:
    meta = next((f.metadata for f in files if f.metadata is not None and f.packagetype == "bdist_wheel"), None)
    meta = meta or next((f.metadata for f in files if f.metadata is not None), None)
    return {
        "name": display_name,
        "version": version,
        "summary": meta.summary if meta else "",
        "license": meta.license if meta else "",
        "requires_python": meta.requires_python if meta else None,
        "requires_dist": list(meta.requires_dist) if meta and meta.requires_dist else None,
        "classifiers": list(meta.classifiers) if meta else [],
        "yanked": False,
        "yanked_reason": None,
    }


def render_project(index: UpstreamIndex, project: str, origin: str) -> RenderedProject:
    files = sorted(index.files[project], key=lambda f: f.filename)
    display = index.display_names[project]
    serial = index.serials[project]
    versions = versions_newest_first(files)
    by_version = {v: [f for f in files if f.version == v] for v in versions}
    releases = {v: [release_file_json(f, origin) for f in fs] for v, fs in by_version.items()}
    latest = versions[0]
    api = {
        "info": info_json(display, latest, by_version[latest]),
        "last_serial": serial,
        "releases": releases,
        "urls": releases[latest],
        "vulnerabilities": [],
    }
    version_json = {
        v: json.dumps(
            {"info": info_json(display, v, fs), "last_serial": serial, "urls": releases[v], "vulnerabilities": []}
        ).encode()
        for v, fs in by_version.items()
    }
    return RenderedProject(
        simple_html=simple_html_page(display, files, origin),
        simple_json=simple_json_page(display, files, origin, serial),
        api_json=json.dumps(api).encode(),
        version_json=version_json,
        serial=serial,
    )


@dataclass
class RenderedIndex:
    projects: dict[str, RenderedProject]
    root_html: bytes
    root_json: bytes
    by_url_path: dict[str, UpstreamFile]
    metadata_by_url_path: dict[str, bytes]


def render_index(index: UpstreamIndex, origin: str) -> RenderedIndex:
    names = sorted(index.files)
    root_html = "\n".join(
        ["<!DOCTYPE html>", "<html><head><meta name=\"pypi:repository-version\" content=\"1.1\"></head><body>"]
        + [f'<a href="/simple/{n}/">{html.escape(index.display_names[n])}</a><br/>' for n in names]
        + ["</body></html>"]
    ).encode()
    root_json = json.dumps(
        {
            "meta": {"api-version": "1.1", "_last-serial": index.last_serial},
            "projects": [{"name": index.display_names[n], "_last-serial": index.serials[n]} for n in names],
        }
    ).encode()
    by_url_path = {f.url_path: f for files in index.files.values() for f in files}
    metadata = {
        f"{f.url_path}.metadata": f.metadata.raw for f in by_url_path.values() if f.metadata_sha256 and f.metadata
    }
    return RenderedIndex(
        projects={n: render_project(index, n, origin) for n in names},
        root_html=root_html,
        root_json=root_json,
        by_url_path=by_url_path,
        metadata_by_url_path=metadata,
    )


def wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return SIMPLE_JSON in accept or request.query.get("format") == SIMPLE_JSON


@dataclass
class XmlRpcApi:
    """The few PyPI XML-RPC methods a mirror uses, over the static index."""

    index: UpstreamIndex

    def list_packages_with_serial(self) -> dict[str, int]:
        return {self.index.display_names[p]: s for p, s in self.index.serials.items()}

    def changelog_last_serial(self) -> int:
        return self.index.last_serial

    def changelog_since_serial(self, since: int) -> list[list[object]]:
        # The upstream is static: one "new release" event per project at its serial.
        return [
            [self.index.display_names[p], versions_newest_first(self.index.files[p])[0], 0, "new release", s]
            for p, s in sorted(self.index.serials.items(), key=lambda kv: kv[1])
            if s > since
        ]

    def package_releases(self, name: str, show_hidden: bool = False) -> list[str]:
        files = self.index.files.get(canonicalize_name(name), [])
        versions = versions_newest_first(files)
        return versions if show_hidden else versions[:1]

    def call(self, method: str, params: tuple[object, ...]) -> object:
        if method.startswith("_") or not hasattr(self, method) or method == "call":
            raise xmlrpc.client.Fault(1, f"no such method: {method}")
        return getattr(self, method)(*params)


@dataclass
class UpstreamApp:
    index: UpstreamIndex
    origin: str
    counters: Counters = field(default_factory=Counters)
    latency_s: float = 0.0
    _rendered: RenderedIndex | None = field(default=None, init=False)

    @property
    def rendered(self) -> RenderedIndex:
        if self._rendered is None:
            self._rendered = render_index(self.index, self.origin)
        return self._rendered

    def serial_headers(self, serial: int) -> dict[str, str]:
        return {SERIAL_HEADER: str(serial)}

    def page(self, request: web.Request, body: bytes, content_type: str, serial: int) -> web.Response:
        """An index page with an ETag, answering a matching If-None-Match with 304 as PyPI's CDN does."""
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {**self.serial_headers(serial), "ETag": etag, "Vary": "Accept"}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=content_type, headers=headers)

    async def simple_root(self, request: web.Request) -> web.Response:
        self.counters.api_requests += 1
        serial = self.index.last_serial
        if wants_json(request):
            return self.page(request, self.rendered.root_json, SIMPLE_JSON, serial)
        return self.page(request, self.rendered.root_html, "text/html", serial)

    async def simple_project(self, request: web.Request) -> web.StreamResponse:
        self.counters.api_requests += 1
        name = request.match_info["project"]
        project = canonicalize_name(name)
        if project != name:
            raise web.HTTPMovedPermanently(f"/simple/{project}/")
        rendered = self.rendered.projects.get(project)
        if rendered is None:
            raise web.HTTPNotFound()
        if wants_json(request):
            return self.page(request, rendered.simple_json, SIMPLE_JSON, rendered.serial)
        return self.page(request, rendered.simple_html, "text/html", rendered.serial)

    async def api_project(self, request: web.Request) -> web.Response:
        self.counters.api_requests += 1
        rendered = self.rendered.projects.get(canonicalize_name(request.match_info["project"]))
        if rendered is None:
            raise web.HTTPNotFound()
        return self.page(request, rendered.api_json, "application/json", rendered.serial)

    async def api_version(self, request: web.Request) -> web.Response:
        self.counters.api_requests += 1
        rendered = self.rendered.projects.get(canonicalize_name(request.match_info["project"]))
        body = rendered.version_json.get(request.match_info["version"]) if rendered else None
        if rendered is None or body is None:
            raise web.HTTPNotFound()
        return self.page(request, body, "application/json", rendered.serial)

    async def xmlrpc(self, request: web.Request) -> web.Response:
        self.counters.api_requests += 1
        params, method = xmlrpc.client.loads(await request.read())
        try:
            body = xmlrpc.client.dumps((XmlRpcApi(self.index).call(method or "", params),), methodresponse=True,
                                       allow_none=True)
        except xmlrpc.client.Fault as fault:
            body = xmlrpc.client.dumps(fault, methodresponse=True)
        return web.Response(text=body, content_type="text/xml",
                            headers=self.serial_headers(self.index.last_serial))

    async def package_file(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        metadata = self.rendered.metadata_by_url_path.get(path)
        if metadata is not None:
            self.counters.api_requests += 1
            return web.Response(body=metadata, content_type="application/octet-stream")
        found = self.rendered.by_url_path.get(path)
        if found is None:
            raise web.HTTPNotFound()
        self.counters.files += 1
        self.counters.file_bytes += found.size
        return web.FileResponse(found.path, headers={"Content-Type": "application/octet-stream"})

    @web.middleware
    async def count_requests(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        self.counters.requests += 1
        if self.latency_s:
            # A round trip to a distant index, which 127.0.0.1 otherwise hides.
            await asyncio.sleep(self.latency_s)
        return await handler(request)

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self.count_requests])
        app.router.add_get("/simple/", self.simple_root)
        app.router.add_get("/simple/{project}/", self.simple_project)
        app.router.add_get("/pypi/{project}/json", self.api_project)
        app.router.add_get("/pypi/{project}/{version}/json", self.api_version)
        app.router.add_post("/pypi", self.xmlrpc)
        app.router.add_post("/RPC2", self.xmlrpc)
        app.router.add_get("/packages/{tail:.+}", self.package_file)
        return app


@dataclass
class RunningUpstream:
    base_url: str
    app: UpstreamApp

    @property
    def counters(self) -> Counters:
        return self.app.counters

    @property
    def simple_url(self) -> str:
        return f"{self.base_url}/simple/"


@contextmanager
def serve_upstream(index: UpstreamIndex, latency_s: float = 0.0) -> Iterator[RunningUpstream]:
    """Serve `index` on 127.0.0.1 (a free port) from a background thread; stops on exit.

    `latency_s` delays every response, to stand in for a remote index.
    """
    upstream = UpstreamApp(index=index, origin="", latency_s=latency_s)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(upstream.make_app(), access_log=None)
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start())
            upstream.origin = f"http://127.0.0.1:{runner.addresses[0][1]}"
            upstream.rendered  # render before the clock of any benchmark starts
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            failure.append(exc)
            started.set()
            loop.run_until_complete(runner.cleanup())
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="upstream", daemon=True)
    thread.start()
    started.wait()
    if failure:
        raise failure[0]
    try:
        yield RunningUpstream(base_url=upstream.origin, app=upstream)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)


def main() -> None:
    """Serve a folder by hand: python benchmarks/_upstream.py FOLDER."""
    import sys
    import time

    index = scan_folder(Path(sys.argv[1]))
    with serve_upstream(index) as upstream:
        print(f"serving {index.file_count} files of {len(index.files)} projects at {upstream.simple_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
