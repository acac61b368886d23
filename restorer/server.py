"""The site's HTTP server: the published trees, the admin pages.

Hot-path design: index pages are pre-generated files (and their gzip twins)
read through the live ``current`` symlink, cached in memory per generation
with a content ETag; package files up to a few MiB are answered from memory
too (``restorer.filecache``), larger ones and Range or conditional requests
go out with ``FileResponse`` (sendfile, Range, ETag/304). No database query
happens while serving the index, so any number of worker processes can
share one listening socket.

In a running worker the plain 200s and 304s of pages and cached files
never reach this application: ``restorer.fastpath`` answers them from the
same caches and hands every other request to it.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import logging
import os
import re
import stat
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.http import HttpVersion10, HttpVersion11
from multidict import CIMultiDict
from packaging.utils import canonicalize_name

from reservoir.context import AppContext
from restorer.auth import Account, AccountStore, Authenticator, AuthMode, TooManyFailures
from restorer.conditional import CONDITIONAL_HEADERS, decide_file, none_match
from restorer.filecache import FileCache, validators
from restorer.negotiation import Choice, negotiate
from restorer.publish.tree import LiveLink
from restorer.wire import header_block

log = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
REALM = 'Basic realm="reservoir", charset="UTF-8"'
APP_KEY = web.AppKey("site", "SiteState")


@dataclass(frozen=True)
class CachedPage:
    body: bytes
    etag: str
    # Everything a 200 answer carries but the body, built once per page.
    headers: dict[str, str]
    not_modified_headers: dict[str, str]
    # The same, encoded for the fast path (restorer.fastpath), Content-Length included.
    wire: bytes
    wire_not_modified: bytes

    def matches(self, if_none_match: str | None) -> bool:
        """Whether a conditional request already holds this page (answer 304)."""
        return none_match(if_none_match, self.etag)


@dataclass(frozen=True)
class PageMiss:
    """Why there is no page to answer with."""

    status: int
    message: str


NOT_ACCEPTABLE = PageMiss(406, "none of the offered media types is acceptable")
NOTHING_PUBLISHED = PageMiss(404, "nothing is published on this site yet")
NO_SUCH_PAGE = PageMiss(404, "not found")


@dataclass
class PageCache:
    """Pre-generated pages of the live generation, kept in memory (bounded LRU)."""

    capacity: int = 20_000
    _entries: OrderedDict[tuple[str, str, bool], CachedPage] = field(default_factory=OrderedDict)
    _generation: str = ""

    def get(self, generation: Path, relative: str, choice: Choice, gzip: bool) -> CachedPage | None:
        if generation.name != self._generation:
            self._entries.clear()
            self._generation = generation.name
        key = (relative, choice.page_name, gzip)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        path = generation / relative / (choice.page_name + ".gz" if gzip else choice.page_name)
        try:
            body = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        common = {"ETag": etag, "Vary": "Accept, Accept-Encoding", "Cache-Control": "max-age=60"}
        headers = {**common, "Content-Type": choice.content_type}
        if gzip:
            headers["Content-Encoding"] = "gzip"
        entry = CachedPage(
            body, etag, headers, common, header_block(headers, len(body)), header_block(common, None)
        )
        self._entries[key] = entry
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return entry


@dataclass
class SiteState:
    trees_dir: Path
    authenticator: Authenticator
    app_context: AppContext | None = None
    pages: PageCache = field(default_factory=PageCache)
    files: FileCache = field(default_factory=FileCache)
    live: LiveLink = field(init=False)  # the live PyPI generation, asked on every request

    def __post_init__(self) -> None:
        self.live = LiveLink(self.pypi_root)

    @property
    def pypi_root(self) -> Path:
        return self.trees_dir / "pypi"


def find_page(
    state: SiteState, relative_dir: str, accept: str | None, format_param: str | None, accept_encoding: str | None
) -> CachedPage | PageMiss:
    """The negotiated page of the live generation (both serving layers answer from this)."""
    choice = negotiate(accept, format_param)
    if choice is None:
        return NOT_ACCEPTABLE
    generation = state.live.generation()
    if generation is None:
        return NOTHING_PUBLISHED
    page = state.pages.get(generation, relative_dir, choice, "gzip" in (accept_encoding or ""))
    return NO_SUCH_PAGE if page is None else page


def file_relative(sha256: str, filename: str) -> str | None:
    """`files/<sha256>/<filename>` inside a generation, or None for a name no published file has."""
    if not SHA256_RE.match(sha256) or "/" in filename or "\x00" in filename or filename in ("", ".", ".."):
        return None
    return f"files/{sha256}/{filename}"


def _state(request: web.Request) -> SiteState:
    return request.app[APP_KEY]


def _unauthorized(message: str = "authentication required") -> web.Response:
    return web.Response(status=401, text=message + "\n", headers={"WWW-Authenticate": REALM})


def _serve_page(request: web.Request, relative_dir: str) -> web.StreamResponse:
    format_param = request.query.get("format") if request.query_string else None
    headers = request.headers
    page = find_page(_state(request), relative_dir, headers.get("Accept"), format_param, headers.get("Accept-Encoding"))
    if isinstance(page, PageMiss):
        return web.Response(status=page.status, text=page.message + "\n")
    if page.matches(headers.get("If-None-Match")):
        return web.Response(status=304, headers=page.not_modified_headers)
    return web.Response(body=page.body, headers=page.headers)


async def simple_root(request: web.Request) -> web.StreamResponse:
    return _serve_page(request, "simple")


async def simple_project(request: web.Request) -> web.StreamResponse:
    project = request.match_info["project"]
    normalized = normalized_project(project)
    if project != normalized or not request.path.endswith("/"):
        location = f"/pypi/simple/{normalized}/"
        if request.query_string:
            location += "?" + request.query_string
        raise web.HTTPMovedPermanently(location)
    return _serve_page(request, f"simple/{normalized}")


@functools.lru_cache(maxsize=4096)
def normalized_project(project: str) -> str:
    return canonicalize_name(project)


async def package_file(request: web.Request) -> web.StreamResponse:
    relative = file_relative(request.match_info["sha256"], request.match_info["filename"])
    if relative is None:
        raise web.HTTPNotFound()
    state = _state(request)
    generation = state.live.generation()
    if generation is None:
        raise web.HTTPNotFound()
    headers = request.headers
    if not any(h in headers for h in REGULAR_PATH_HEADERS):
        cached = state.files.get(generation, relative, FILE_HEADERS)
        if cached is not None:
            return web.Response(body=cached.body, headers=cached.headers)
    path = generation / relative
    try:
        st = path.stat()
    except OSError:
        raise web.HTTPNotFound() from None
    if not stat.S_ISREG(st.st_mode):
        raise web.HTTPNotFound()
    return answer_file(request, path, st, FILE_HEADERS)


def answer_file(request: web.Request, path: Path, st: os.stat_result, base: dict[str, str]) -> web.StreamResponse:
    """A static file's answer to `request`, its conditions and range decided once by RFC 9110 (restorer.conditional)."""
    valid = validators(st)
    headers = request.headers
    decision = decide_file(request.method, headers, valid.etag, valid.last_modified, valid.mtime_s, st.st_size)
    if decision.status == 304:
        return web.Response(status=304, headers={**base, "ETag": valid.etag, "Last-Modified": valid.last_modified})
    if decision.status == 412:
        return web.Response(status=412, text="precondition failed\n")
    if decision.status == 416:
        return web.Response(status=416, headers={"Content-Range": f"bytes */{st.st_size}"})
    # FileResponse only sends the bytes decided here: it sees no condition, and at most one plain range.
    plain = CIMultiDict((name, value) for name, value in headers.items() if name.lower() not in REGULAR_PATH_HEADERS_CI)
    if decision.range is not None:
        plain["Range"] = f"bytes={decision.range.first}-{decision.range.last}"
    return DecidedFile(path, plain, headers=base)


class DecidedFile(web.FileResponse):
    """A FileResponse that reads its request with these headers, so that it decides nothing itself."""

    def __init__(self, path: Path, request_headers: CIMultiDict[str], headers: dict[str, str]) -> None:
        super().__init__(path, headers=headers)
        self._request_headers = request_headers

    async def prepare(self, request: web.BaseRequest):  # type: ignore[no-untyped-def]
        return await super().prepare(request.clone(headers=self._request_headers))


FILE_HEADERS = {"Cache-Control": "max-age=31536000, immutable"}
# What restorer.conditional decides (partial content, 304, 412, 416) rather than the cache.
REGULAR_PATH_HEADERS = CONDITIONAL_HEADERS
REGULAR_PATH_HEADERS_CI = frozenset(h.lower() for h in CONDITIONAL_HEADERS)


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _login(request: web.Request) -> Account | None:
    """The account the request's credentials prove: checked once, off the event loop, failures limited per address."""
    try:
        return await _state(request).authenticator.verify(request.headers.get("Authorization"), request.remote or "-")
    except TooManyFailures as exc:
        raise web.HTTPTooManyRequests(
            text="too many failed logins from this address: retry later\n",
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from None


async def _require_admin(request: web.Request) -> Account | web.Response:
    authenticator = _state(request).authenticator
    if not authenticator.has_admins():
        return web.Response(
            status=403,
            text="admin pages need an admin account: run `reservoir users add NAME --admin`\n",
        )
    account = await _login(request)
    if account is None:
        return _unauthorized("admin pages require authentication")
    if not account.admin:
        return web.Response(status=403, text=f"{account.name} is not an admin\n")
    return account


AdminHandler = Callable[[web.Request, Account], Awaitable[web.StreamResponse]]


def admin_only(handler: AdminHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Admin pages always need an admin account, whatever [server] auth says."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        who = await _require_admin(request)
        if isinstance(who, web.Response):
            return who
        return await handler(request, who)

    return guarded


@admin_only
async def admin_index(request: web.Request, who: Account) -> web.StreamResponse:
    state = _state(request)
    generation = state.live.generation()
    body = (
        "<!DOCTYPE html><html><head><title>Reservoir site</title></head><body>"
        f"<h1>Reservoir site</h1><p>Signed in as {html.escape(who.name)}.</p>"
        f"<p>PyPI tree: {html.escape(generation.name if generation else 'not published yet')}</p>"
        '<ul><li><a href="/admin/licenses">License and security report</a></li>'
        '<li><a href="/admin/status">Status (JSON)</a></li></ul></body></html>'
    )
    return web.Response(text=body, content_type="text/html")


@admin_only
async def admin_status(request: web.Request, _who: Account) -> web.StreamResponse:
    state = _state(request)
    generation = state.live.generation()
    projects = 0
    if generation is not None:
        try:
            projects = len(json.loads((generation / "simple" / "index.json").read_bytes())["projects"])
        except (FileNotFoundError, KeyError, ValueError):
            projects = 0
    return web.json_response({"pypi": {"generation": generation.name if generation else None, "projects": projects}})


@admin_only
async def admin_licenses(request: web.Request, _who: Account) -> web.StreamResponse:
    app_context = _state(request).app_context
    try:
        from licenses.report import render_html  # the licenses component is optional on a site
    except ImportError:
        return web.Response(status=404, text="the licenses component is not installed\n")
    if app_context is None:
        return web.Response(status=503, text="no database configured for this server\n")
    with app_context.db.session() as session:
        body = render_html(session)
    return web.Response(text=body, content_type="text/html")


@web.middleware
async def index_auth(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Guards everything but /admin (which checks itself) and /healthz."""
    if request.path.startswith("/pypi/") or request.path.startswith("/apt/") or request.path.startswith("/yum/"):
        if await _login(request) is None:
            return _unauthorized()
    return await handler(request)


@web.middleware
async def http_1_only(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """505 for any version but 1.0 and 1.1, which llhttp reads (HTTP/0.9, HTTP/2.0) and aiohttp would answer."""
    if request.version not in (HttpVersion10, HttpVersion11):
        # aiohttp writes the status line in the request's version: this server speaks 1.1 only.
        request._cache["version"] = HttpVersion11  # noqa: SLF001 (reify's cache; tested)
        response = web.Response(status=505, text="only HTTP/1.0 and HTTP/1.1 are served here\n")
        response.force_close()
        return response
    return await handler(request)


def build_app(state: SiteState, mode: AuthMode) -> web.Application:
    app = web.Application(middlewares=[index_auth] if mode != "none" else [])
    app.middlewares.insert(0, http_1_only)
    app[APP_KEY] = state
    app.router.add_get("/pypi/simple/", simple_root)
    app.router.add_get("/pypi/simple", lambda r: _redirect(r, "/pypi/simple/"))
    app.router.add_get("/pypi/simple/{project}/", simple_project)
    app.router.add_get("/pypi/simple/{project}", simple_project)
    app.router.add_get("/pypi/files/{sha256}/{filename}", package_file)
    app.router.add_get("/healthz", health)
    app.router.add_get("/admin/", admin_index)
    app.router.add_get("/admin", lambda r: _redirect(r, "/admin/"))
    app.router.add_get("/admin/status", admin_status)
    app.router.add_get("/admin/licenses", admin_licenses)
    from reservoir.plugins import web_registrars  # components' routes (entry points `reservoir.web`): the session API

    for register in web_registrars():
        register(app, state)
    return app


async def _redirect(_request: web.Request, location: str) -> web.Response:
    raise web.HTTPMovedPermanently(location)


def site_state(app_context: AppContext, mode: AuthMode) -> SiteState:
    home = app_context.home
    return SiteState(
        trees_dir=home.trees_dir,
        authenticator=Authenticator(AccountStore(home.keys_dir), mode),
        app_context=app_context,
    )
