"""One sync of a PyPI channel: imported only when a sync runs (it brings the http client)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from downloader.base import ChannelSpec, FetchPolicy, Selection, StoreOutcome, UpstreamFile
from downloader.fetch import Fetcher, FetchingSync
from downloader.pypi.adapter import Caches, PyPIAdapter
from downloader.pypi.index import JSON_TYPE
from downloader.pypi.options import PyPIOptions
from reservoir.blobs import BlobStore

# PyPI's page serial header, and a file:// index folder's pages: PEP 691 JSON
# beside the HTML wins, as content negotiation would.
SERIAL_HEADER = "X-PyPI-Last-Serial"
FOLDER_PAGES = (("index.json", JSON_TYPE), ("index.html", "text/html"))


def pypi_fetcher(policy: FetchPolicy) -> Fetcher:
    """The shared transport, told where PyPI keeps its serials and its folder pages."""
    return Fetcher(policy, serial_header=SERIAL_HEADER, folder_pages=FOLDER_PAGES)


@dataclass
class PyPISync(FetchingSync):
    """One sync of a PyPI channel: one connection pool, the adapter over it."""

    channel: ChannelSpec
    blobs: BlobStore
    caches: Caches
    policy: FetchPolicy
    _adapter: PyPIAdapter | None = field(default=None, init=False)

    def make_fetcher(self) -> Fetcher:
        return pypi_fetcher(self.policy)

    async def select(self, on_progress: Callable[[], None]) -> Selection:
        options = PyPIOptions.from_json(dict(self.channel.options))
        self._adapter = PyPIAdapter(self.channel.upstream, options, self.blobs, self.caches, self.fetcher,
                                    on_page=on_progress)
        selection = await self._adapter.select()
        root = self.caches.root
        selection.cursor = str(root.serial) if root is not None and root.serial is not None else None
        return selection

    async def store(self, files: list[UpstreamFile], on_done: Callable[[int], None]) -> list[StoreOutcome]:
        assert self._adapter is not None, "select before store"
        return await self._adapter.store(files, on_done)
