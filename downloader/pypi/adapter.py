"""The PyPI adapter: select a channel's releases and store their files.

Caches make a re-sync cheap: each project page is fetched conditionally
(ETag / Last-Modified) and re-parsed only when its bytes changed, and the
metadata of a file is read once, keyed by the file's sha256, so resolving
an unchanged upstream downloads nothing.

Where the upstream offers serials (PyPI's `_last-serial` in its PEP 691
root index, `X-PyPI-Last-Serial` on pages), one conditional request for the
root tells which projects changed since the pages the cache holds; the
others are not asked at all, so a no-change sync is one request (as
bandersnatch's changelog call). A project never fetched, a page without a
serial, a channel whose options changed, or a root without serials falls
back to the conditional request per project.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from downloader.base import SelectedRelease, Selection, StoreOutcome, UpstreamFile
from downloader.pypi.closure import Closure, gather_all
from downloader.fetch import Fetcher, NotFound, Unreachable, is_file_url, upstream_root_exists
from downloader.pypi.files import SDIST, WHEEL, Distribution
from downloader.pypi.index import (
    ACCEPT,
    JSON_TYPE,
    IndexFile,
    ProjectPage,
    parse_page,
    parse_root_serial,
    parse_root_serials,
    parse_serial_header,
)
from downloader.pypi.metadata import CoreMetadata, parse_metadata, read_sdist_metadata, read_wheel_metadata
from downloader.pypi.options import PyPIOptions
from reservoir.blobs import BlobBatch, BlobStore
from reservoir.errors import IntegrityError, ReservoirError


@dataclass
class CachedPage:
    etag: str | None
    last_modified: str | None
    digest: str
    files: list[dict[str, Any]]
    serial: int | None = None  # the upstream's serial of this page's content
    listed_serial: int | None = None  # the project's serial in the last root index read


@dataclass
class CachedRoot:
    """The last root index read for a channel: its validators and the options it was read for."""

    etag: str | None
    last_modified: str | None
    options_digest: str
    serial: int | None  # the root's `meta._last-serial`; None: the upstream offers no serials
    size: int | None = None  # bytes of the root's body when last read; None: not known


@dataclass
class CachedMetadata:
    metadata_sha256: str | None
    fields: dict[str, Any]


@dataclass
class Caches:
    """What earlier syncs learned; the hub loads and saves these."""

    pages: dict[str, CachedPage] = field(default_factory=dict)
    metadata: dict[str, CachedMetadata] = field(default_factory=dict)  # by file sha256
    root: CachedRoot | None = None
    changed_pages: set[str] = field(default_factory=set)
    changed_metadata: set[str] = field(default_factory=set)
    root_changed: bool = False
    # The root as the no-change probe just fetched it (a PageResponse, 200): this sync reads it instead.
    fetched_root: Any = None

    def remember_root(self, entry: CachedRoot) -> None:
        if entry != self.root:
            self.root = entry
            self.root_changed = True

    def remember_page(self, project: str, entry: CachedPage) -> None:
        self.pages[project] = entry
        self.changed_pages.add(project)

    def remember_metadata(self, file_sha256: str, entry: CachedMetadata) -> None:
        self.metadata[file_sha256] = entry
        self.changed_metadata.add(file_sha256)


# A conditional page request costs a round trip and about this many bytes of headers.
# The root of a large index (PyPI's lists every project: tens of MB) is worth
# reading only when it is smaller than the page requests it saves, so a
# curated channel of fifty projects keeps asking its fifty pages.
ROOT_BYTES_PER_PAGE = 32 * 1024


def root_worth_reading(root_size: int | None, pages: int) -> bool:
    """Whether one read of the root index costs less than asking each of `pages` pages."""
    return root_size is None or root_size <= pages * ROOT_BYTES_PER_PAGE


# Only the JSON root carries serials; an HTML root is still read (and ignored) if that is all there is.
ROOT_ACCEPT = f"{JSON_TYPE}, text/html;q=0.1"


def project_what(project: str, required_by: str) -> str:
    return f"project {project!r}" + (f" (required by {required_by})" if required_by else "")


# A wheel this small costs about what its PEP 658 metadata file costs to fetch,
# and it will be mirrored anyway: fetch it once instead of both.
SMALL_WHEEL_BYTES = 256 * 1024


def _small(file: IndexFile) -> bool:
    return file.size is not None and file.size <= SMALL_WHEEL_BYTES


# How much a sync downloads between two commits of its blobs: what a kill may cost it.
COMMIT_EVERY_FILES = 256
COMMIT_EVERY_BYTES = 512 << 20


@dataclass
class PyPIAdapter:
    upstream: str
    options: PyPIOptions
    blobs: BlobStore
    caches: Caches
    fetcher: Fetcher
    on_page: Callable[[], None] = lambda: None
    # {project: serial} from the root index read by this sync; None: ask every page.
    listed: dict[str, int] | None = None

    def page_url(self, project: str) -> str:
        return f"{self.upstream.rstrip('/')}/{project}/"

    @property
    def options_digest(self) -> str:
        return hashlib.sha256(json.dumps(self.options.to_json(), sort_keys=True).encode()).hexdigest()

    async def select(self) -> Selection:
        if is_file_url(self.upstream) and not upstream_root_exists(self.upstream):
            raise Unreachable(f"upstream unreachable: {self.upstream} is not a folder",
                              hint="check the channel's --upstream")
        self.listed = await self.read_root_serials()
        closure = Closure(self.options.targets, self.options.latest, self.options.sdists,
                          self.fetch_pages, self.read_metadata)
        result = await closure.run(self.options.requirements)
        selection = Selection(warnings=list(dict.fromkeys(result.warnings)))
        for (_project, _version), chosen in sorted(result.chosen.items()):
            metadata = chosen.metadata
            release = SelectedRelease(
                name=chosen.project,
                display_name=metadata.name if metadata else chosen.display_name,
                version=str(chosen.version),
                files=[self._upstream_file(f) for _, f in sorted(chosen.files.items())],
                meta=metadata.release_meta if metadata else {},
                declared_license=metadata.declared_license if metadata else "",
                failure=chosen.failure,
            )
            for file in release.files:
                cached = self.caches.metadata.get(file.sha256)
                if file.meta["packagetype"] == WHEEL and cached and cached.metadata_sha256:
                    release.aux_blobs[file.filename] = {"metadata": cached.metadata_sha256}
            selection.add(release)
        selection.downloaded_files = self.fetcher.downloaded_files
        selection.downloaded_bytes = self.fetcher.downloaded_bytes
        return selection

    @staticmethod
    def _upstream_file(file: IndexFile) -> UpstreamFile:
        assert file.sha256 is not None
        packagetype = WHEEL if file.filename.endswith(".whl") else SDIST
        return UpstreamFile(
            filename=file.filename,
            url=file.url,
            sha256=file.sha256,
            size=file.size,
            meta={
                "packagetype": packagetype,
                "requires_python": file.requires_python,
                "yanked": file.yanked,
                "upload_time": file.upload_time,
            },
            aux_roles=("metadata",) if packagetype == WHEEL else (),
        )

    # ------------------------------------------------------------ pages

    async def read_root_serials(self) -> dict[str, int] | None:
        """Ask the root index once; {project: serial}, or None to ask each page instead."""
        if not any(p.serial is not None for p in self.caches.pages.values()):
            return None  # nothing to skip: a first sync, or an upstream whose pages carry no serials
        digest = self.options_digest
        cached = self.caches.root
        if cached is not None and not root_worth_reading(cached.size, len(self.caches.pages)):
            return None
        options_changed = cached is not None and cached.options_digest != digest
        conditional = cached is not None and cached.serial is not None and not options_changed
        url = self.upstream.rstrip("/") + "/"
        fetched, self.caches.fetched_root = self.caches.fetched_root, None
        try:
            response = fetched if fetched is not None and conditional else await self.fetcher.get_page(
                "the upstream's root index", url, cached.etag if conditional and cached else None,
                cached.last_modified if conditional and cached else None, ROOT_ACCEPT)
        except ReservoirError:
            return None  # the pages are still there to ask; the root is only a shortcut
        if response.status == 304 and conditional:
            return {project: page.listed_serial for project, page in self.caches.pages.items()
                    if page.listed_serial is not None}
        serials = parse_root_serials(response.content_type, response.body) if response.status == 200 else None
        root_serial = parse_root_serial(response.body) if serials is not None else None
        size = len(response.body) if response.status == 200 else None
        self.caches.remember_root(CachedRoot(response.etag, response.last_modified, digest, root_serial, size))
        if serials is None:
            return None
        for project, page in self.caches.pages.items():
            listed = serials.get(project)
            if listed != page.listed_serial:
                self.caches.remember_page(project, replace(page, listed_serial=listed))
        # Options just changed: this sync asks every page once, the next one trusts the root again.
        return None if options_changed else serials

    def _unchanged(self, project: str, cached: CachedPage | None) -> bool:
        if self.listed is None or cached is None or cached.serial is None:
            return False
        listed = self.listed.get(project)
        return listed is not None and listed <= cached.serial

    async def fetch_pages(self, projects: list[str], required_by: dict[str, str]) -> dict[str, ProjectPage]:
        pages = await gather_all(self._page(p, required_by.get(p, "")) for p in projects)
        return dict(zip(projects, pages, strict=True))

    async def _page(self, project: str, required_by: str) -> ProjectPage:
        what = project_what(project, required_by)
        cached = self.caches.pages.get(project)
        if self._unchanged(project, cached):
            assert cached is not None
            self.on_page()
            return ProjectPage.from_json(project, cached.files)
        # What the root listed stays remembered even in a sync that does not trust it (options changed).
        listed = self.listed.get(project) if self.listed is not None else (cached.listed_serial if cached else None)
        url = self.page_url(project)
        try:
            response = await self.fetcher.get_page(
                what, url, cached.etag if cached else None, cached.last_modified if cached else None, ACCEPT
            )
        except NotFound:
            if not required_by:
                raise  # a requested project: the channel's own input is wrong
            # A dependency: the releases needing it fail, the rest of the channel syncs.
            return ProjectPage(project, missing=True)
        self.on_page()
        header_serial = parse_serial_header(response.serial)
        if response.status == 304 and cached is not None:
            self._refresh(project, cached, replace(cached, serial=header_serial or cached.serial, listed_serial=listed))
            return ProjectPage.from_json(project, cached.files)
        digest = hashlib.sha256(response.content_type.encode() + b"\0" + response.body).hexdigest()
        if cached is not None and cached.digest == digest:
            self._refresh(project, cached, replace(cached, etag=response.etag, last_modified=response.last_modified,
                                                   serial=header_serial or cached.serial, listed_serial=listed))
            return ProjectPage.from_json(project, cached.files)
        page = parse_page(project, url, response.content_type, response.body)
        serial = header_serial if header_serial is not None else page.serial
        self.caches.remember_page(project, CachedPage(response.etag, response.last_modified, digest, page.to_json(),
                                                      serial, listed))
        return page

    def _refresh(self, project: str, cached: CachedPage, fresh: CachedPage) -> None:
        if fresh != cached:
            self.caches.remember_page(project, fresh)

    # ------------------------------------------------------------ metadata

    async def read_metadata(self, project: str, what: str, file: IndexFile, dist: Distribution) -> CoreMetadata | None:
        """The release's core metadata; None for an sdist whose dependencies are dynamic."""
        assert file.sha256 is not None
        cached = self.caches.metadata.get(file.sha256)
        if cached is None:
            cached = await self._read_metadata_upstream(what, file, dist)
            self.caches.remember_metadata(file.sha256, cached)
        metadata = CoreMetadata.from_json(cached.fields)
        if dist.packagetype == SDIST and not metadata.static_dependencies:
            return None
        return metadata

    async def _read_metadata_upstream(self, what: str, file: IndexFile, dist: Distribution) -> CachedMetadata:
        assert file.sha256 is not None
        if dist.packagetype == WHEEL and file.core_metadata is not False and not _small(file):
            raw = await self.fetcher.get_bytes(f"{what}: {file.filename}.metadata", file.metadata_url)
            expected = file.core_metadata if isinstance(file.core_metadata, str) else None
            if expected is not None and hashlib.sha256(raw).hexdigest() != expected:
                raise IntegrityError(f"sha256 mismatch for {file.filename}.metadata")
        else:
            stored = await self.fetcher.download(file.filename, file.url, self.blobs, file.sha256, file.size)
            path = self.blobs.path(stored.sha256)
            if dist.packagetype == WHEEL:
                raw = await asyncio.to_thread(read_wheel_metadata, path, f"{what}: {file.filename}")
            else:
                found = await asyncio.to_thread(read_sdist_metadata, path, file.filename, f"{what}: {file.filename}")
                if found is None:
                    return CachedMetadata(None, CoreMetadata(str(dist.name), str(dist.version)).to_json())
                raw = found
        metadata = parse_metadata(raw, f"{what}: {file.filename}")
        return CachedMetadata(await asyncio.to_thread(self.blobs.put_bytes, raw), metadata.to_json())

    # ------------------------------------------------------------ files

    async def store(self, files: list[UpstreamFile], on_done: Callable[[int], None]) -> list[StoreOutcome]:
        """Fetch `files` into the blob store; a wheel also gets its METADATA blob.

        Blobs are committed in groups (one filesystem sync per group instead
        of an fsync per file and per folder); a sync killed midway keeps the
        groups committed before, so the next run goes on from there.
        """
        with self.blobs.batch() as batch:
            outcomes = await asyncio.gather(*(self._store_one(f, on_done, batch) for f in files))
            await asyncio.to_thread(batch.commit)
        return outcomes

    async def _store_one(self, file: UpstreamFile, on_done: Callable[[int], None], batch: BlobBatch) -> StoreOutcome:
        outcome = StoreOutcome(file.filename, file.sha256)
        try:
            stored = await self.fetcher.download(file.filename, file.url, batch, file.sha256, file.size)
            if file.meta.get("packagetype") == WHEEL:
                outcome.aux_blobs["metadata"] = await self._wheel_metadata_blob(file, batch)
            if len(batch) >= COMMIT_EVERY_FILES or batch.waiting_bytes >= COMMIT_EVERY_BYTES:
                await asyncio.to_thread(batch.commit)
            on_done(stored.size)
        except ReservoirError as exc:
            outcome.error = exc.message
            on_done(0)
        return outcome

    async def _wheel_metadata_blob(self, file: UpstreamFile, batch: BlobBatch) -> str:
        cached = self.caches.metadata.get(file.sha256)
        if cached is not None and cached.metadata_sha256 and batch.has(cached.metadata_sha256):
            return cached.metadata_sha256
        def read() -> bytes:
            with batch.open(file.sha256) as wheel:
                return read_wheel_metadata(wheel, file.filename)

        raw = await asyncio.to_thread(read)
        metadata = parse_metadata(raw, file.filename)
        digest = await asyncio.to_thread(batch.put_bytes, raw)
        self.caches.remember_metadata(file.sha256, CachedMetadata(digest, metadata.to_json()))
        return digest
