"""Upstream access over http(s) and file://, with retries, into the blob store.

The transport every adapter shares; what is an ecosystem's own (PyPI's
serial header, the index file names of a `file://` index folder) is given to
the `Fetcher` by the adapter that makes it. One `Fetcher` per sync: one aiohttp connection pool, a bound on requests in
flight, per-request timeouts, and retries with exponential backoff on
connection errors and 5xx/429 answers. Package files stream into
`BlobStore.writer`, so the sha256 is checked while the bytes arrive and a
file that does not match never becomes visible.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import aiohttp

from downloader.base import FetchPolicy
from reservoir.blobs import BlobSink, BlobWriter
from reservoir.errors import IntegrityError, ReservoirError

T = TypeVar("T")
S = TypeVar("S", bound="FetchingSync")
CHUNK = 1 << 16
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class Unreachable(ReservoirError):
    pass


class NotFound(ReservoirError):
    pass


@dataclass(frozen=True)
class PageResponse:
    status: int  # 200, or 304 when the cached copy is still current
    body: bytes
    content_type: str
    etag: str | None
    last_modified: str | None
    serial: str | None = None  # the Fetcher's serial header, as sent


@dataclass
class StoredFile:
    sha256: str
    size: int


def file_path(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


def is_file_url(url: str) -> bool:
    return url.startswith("file:")


@dataclass
class Fetcher:
    """Use as an async context manager; counts the files and bytes it downloads."""

    policy: FetchPolicy = field(default_factory=FetchPolicy)
    # A response header carrying the upstream's serial for a page (PyPI: X-PyPI-Last-Serial).
    serial_header: str | None = None
    # For a file:// URL naming a folder: the files that stand for its page, first found wins.
    folder_pages: tuple[tuple[str, str], ...] = ()
    downloaded_files: int = 0
    downloaded_bytes: int = 0
    _session: aiohttp.ClientSession | None = field(default=None, init=False)
    _slots: asyncio.Semaphore | None = field(default=None, init=False)

    async def __aenter__(self) -> Fetcher:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.policy.connect_timeout_s, sock_read=self.policy.read_timeout_s
        )
        connector = aiohttp.TCPConnector(limit=self.policy.concurrency)
        # trust_env: honour the host's proxy settings, as pip does.
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector, trust_env=True)
        self._slots = asyncio.Semaphore(self.policy.concurrency)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use Fetcher as an async context manager"
        return self._session

    @property
    def slots(self) -> asyncio.Semaphore:
        assert self._slots is not None, "use Fetcher as an async context manager"
        return self._slots

    async def _with_retries(self, what: str, url: str, attempt_once: Callable[[], Awaitable[T]]) -> T:
        last = ""
        for attempt in range(self.policy.attempts):
            if attempt:
                await asyncio.sleep(self.policy.backoff_s * 2 ** (attempt - 1))
            try:
                async with self.slots:
                    return await attempt_once()
            except _Retry as exc:
                last = str(exc)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as exc:
                last = str(exc) or type(exc).__name__
        raise Unreachable(
            f"{what}: upstream unreachable at {url} after {self.policy.attempts} attempts ({last})",
            hint="check the network and the channel's --upstream",
        )

    async def get_page(self, what: str, url: str, etag: str | None = None, last_modified: str | None = None,
                       accept: str = "") -> PageResponse:
        """GET a page; 304 with an empty body when `etag`/`last_modified` still hold."""
        if is_file_url(url):
            return await asyncio.to_thread(_read_file_page, what, url, self.folder_pages)
        headers = {"Accept": accept} if accept else {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified

        async def once() -> PageResponse:
            async with self.session.get(url, headers=headers) as resp:
                if resp.status in RETRY_STATUSES:
                    raise _Retry(f"HTTP {resp.status}")
                if resp.status == 404:
                    raise NotFound(f"{what}: not found upstream (HTTP 404 at {url})",
                                   hint="check the project name and the channel's upstream")
                serial = resp.headers.get(self.serial_header) if self.serial_header else None
                if resp.status == 304:
                    return PageResponse(304, b"", "", etag, last_modified, serial)
                if resp.status != 200:
                    raise ReservoirError(f"{what}: upstream answered HTTP {resp.status} at {url}")
                body = await resp.read()
                return PageResponse(200, body, resp.headers.get("Content-Type", "text/html"),
                                    resp.headers.get("ETag"), resp.headers.get("Last-Modified"), serial)

        return await self._with_retries(what, url, once)

    async def get_bytes(self, what: str, url: str) -> bytes:
        return (await self.get_page(what, url)).body

    async def download(self, what: str, url: str, blobs: BlobSink, sha256: str | None,
                       size: int | None = None) -> StoredFile:
        """Stream `url` into the blob store, checking `sha256`/`size` on the way.

        Raises IntegrityError on a mismatch (nothing is stored).
        """
        if sha256 is not None and blobs.has(sha256):
            return StoredFile(sha256, blobs.size(sha256))
        if is_file_url(url):
            stored = await asyncio.to_thread(_copy_file, what, url, blobs, sha256, size)
        else:
            stored = await self._with_retries(what, url, lambda: self._download_once(what, url, blobs, sha256, size))
        self.downloaded_files += 1
        self.downloaded_bytes += stored.size
        return stored

    async def _download_once(self, what: str, url: str, blobs: BlobSink, sha256: str | None,
                             size: int | None) -> StoredFile:
        async with self.session.get(url) as resp:
            if resp.status in RETRY_STATUSES:
                raise _Retry(f"HTTP {resp.status}")
            if resp.status == 404:
                raise NotFound(f"{what}: file not found upstream (HTTP 404 at {url})")
            if resp.status != 200:
                raise ReservoirError(f"{what}: upstream answered HTTP {resp.status} at {url}")
            # Creating the temporary file can stall behind other threads' fsyncs: not on the loop.
            with await asyncio.to_thread(blobs.writer, sha256, size) as writer:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    writer.write(chunk)
                # commit fsyncs: in a thread, so other downloads go on meanwhile.
                digest = await asyncio.to_thread(_commit, what, writer)
                return StoredFile(digest, writer.size)


class _Retry(Exception):
    pass


def _commit(what: str, writer: BlobWriter) -> str:
    try:
        return writer.commit()
    except IntegrityError as exc:
        kind = "size" if exc.message.startswith("size") else "sha256"
        raise IntegrityError(f"{kind} mismatch for {what}", hint=f"{exc.message}; the file was discarded") from None


def _read_file_page(what: str, url: str, folder_pages: tuple[tuple[str, str], ...] = ()) -> PageResponse:
    path = file_path(url)
    if path.is_dir():
        for name, content_type in folder_pages:
            if (path / name).is_file():
                return PageResponse(200, (path / name).read_bytes(), content_type, None, None)
        raise NotFound(f"{what}: not found upstream (no {' or '.join(n for n, _ in folder_pages) or 'page'} in {path})",
                       hint="check the project name and the channel's upstream")
    try:
        return PageResponse(200, path.read_bytes(), "application/octet-stream", None, None)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise Unreachable(f"{what}: upstream unreachable: {path.parent} does not exist",
                              hint="check the channel's --upstream") from None
        raise NotFound(f"{what}: not found upstream ({path} does not exist)",
                       hint="check the project name and the channel's upstream") from None
    except OSError as exc:
        raise Unreachable(f"{what}: upstream unreachable: cannot read {path} ({exc.strerror})") from None


def _copy_file(what: str, url: str, blobs: BlobSink, sha256: str | None, size: int | None) -> StoredFile:
    path = file_path(url)
    try:
        source = open(path, "rb")
    except FileNotFoundError:
        raise NotFound(f"{what}: file not found upstream ({path} does not exist)") from None
    except OSError as exc:
        raise Unreachable(f"{what}: cannot read {path} ({exc.strerror})") from None
    with source, blobs.writer(sha256, size) as writer:
        while chunk := source.read(1 << 20):
            writer.write(chunk)
        digest = _commit(what, writer)
        return StoredFile(digest, writer.size)


def upstream_root_exists(url: str) -> bool:
    """For file:// upstreams: whether the index folder is there at all."""
    return os.path.isdir(file_path(url)) if is_file_url(url) else True


@dataclass
class FetchingSync:
    """The connection pool of one sync, for an adapter's sync class to inherit.

    A subclass has a `policy` field and may override `make_fetcher` to give the
    transport its ecosystem's settings; it is used as an async context manager.
    """

    _fetcher: Fetcher | None = field(default=None, init=False)

    def make_fetcher(self) -> Fetcher:
        return Fetcher(self.policy)  # type: ignore[attr-defined]

    @property
    def fetcher(self) -> Fetcher:
        assert self._fetcher is not None, "use the sync as an async context manager"
        return self._fetcher

    @property
    def downloaded_files(self) -> int:
        return self.fetcher.downloaded_files

    @property
    def downloaded_bytes(self) -> int:
        return self.fetcher.downloaded_bytes

    async def __aenter__(self: S) -> S:
        self._fetcher = await self.make_fetcher().__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.fetcher.__aexit__(exc_type, exc, tb)
