"""The PyPI adapter: select a channel's releases and store their files.

Caches make a re-sync cheap: each project page is fetched conditionally
(ETag / Last-Modified) and re-parsed only when its bytes changed, and the
metadata of a file is read once, keyed by the file's sha256, so resolving
an unchanged upstream downloads nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from downloader.base import SelectedRelease, Selection, UpstreamFile
from downloader.pypi.closure import Closure, gather_all
from downloader.pypi.fetch import Fetcher, NotFound, Unreachable, is_file_url, upstream_root_exists
from downloader.pypi.files import SDIST, WHEEL, Distribution
from downloader.pypi.index import ACCEPT, IndexFile, ProjectPage, parse_page
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


@dataclass
class CachedMetadata:
    metadata_sha256: str | None
    fields: dict[str, Any]


@dataclass
class Caches:
    """What earlier syncs learned; the hub loads and saves these."""

    pages: dict[str, CachedPage] = field(default_factory=dict)
    metadata: dict[str, CachedMetadata] = field(default_factory=dict)  # by file sha256
    changed_pages: set[str] = field(default_factory=set)
    changed_metadata: set[str] = field(default_factory=set)

    def remember_page(self, project: str, entry: CachedPage) -> None:
        self.pages[project] = entry
        self.changed_pages.add(project)

    def remember_metadata(self, file_sha256: str, entry: CachedMetadata) -> None:
        self.metadata[file_sha256] = entry
        self.changed_metadata.add(file_sha256)


@dataclass
class StoreOutcome:
    filename: str
    sha256: str
    error: str = ""
    aux_blobs: dict[str, str] = field(default_factory=dict)


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

    def page_url(self, project: str) -> str:
        return f"{self.upstream.rstrip('/')}/{project}/"

    async def select(self) -> Selection:
        if is_file_url(self.upstream) and not upstream_root_exists(self.upstream):
            raise Unreachable(f"upstream unreachable: {self.upstream} is not a folder",
                              hint="check the channel's --upstream")
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
        )

    # ------------------------------------------------------------ pages

    async def fetch_pages(self, projects: list[str], required_by: dict[str, str]) -> dict[str, ProjectPage]:
        pages = await gather_all(self._page(p, required_by.get(p, "")) for p in projects)
        return dict(zip(projects, pages, strict=True))

    async def _page(self, project: str, required_by: str) -> ProjectPage:
        what = project_what(project, required_by)
        cached = self.caches.pages.get(project)
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
        if response.status == 304 and cached is not None:
            return ProjectPage.from_json(project, cached.files)
        digest = hashlib.sha256(response.content_type.encode() + b"\0" + response.body).hexdigest()
        if cached is not None and cached.digest == digest:
            if (cached.etag, cached.last_modified) != (response.etag, response.last_modified):
                self.caches.remember_page(project, CachedPage(response.etag, response.last_modified, digest,
                                                              cached.files))
            return ProjectPage.from_json(project, cached.files)
        page = parse_page(project, url, response.content_type, response.body)
        self.caches.remember_page(project, CachedPage(response.etag, response.last_modified, digest, page.to_json()))
        return page

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
