"""One sync of a PyPI channel: imported only when a sync runs (it brings the http client)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from downloader.base import (
    AdapterState,
    ChannelSpec,
    FetchPolicy,
    Selection,
    StoreOutcome,
    UpstreamFile,
)
from downloader.fetch import Fetcher, FetchingSync, is_file_url, upstream_root_exists
from downloader.pypi.adapter import ROOT_ACCEPT, Caches, PyPIAdapter, root_worth_reading
from downloader.pypi.index import JSON_TYPE, parse_root_serial
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


# The root index's validators and serial, copied into the hub's per-channel state so that the
# no-change probe reads one small row instead of the page caches.
ROOT_STATE_KEY = "root_probe"


def root_probe_state(caches: Caches) -> dict[str, Any] | None:
    """What `root_cursor` needs of the caches; None when the adapter would not read the root."""
    root = caches.root
    if root is None or root.serial is None or not any(p.serial is not None for p in caches.pages.values()):
        return None
    return {"etag": root.etag, "last_modified": root.last_modified, "serial": root.serial, "size": root.size,
            "pages": len(caches.pages)}


async def root_cursor(upstream: str, state: AdapterState, policy: FetchPolicy) -> str | None:
    """The upstream's serial now, from one conditional request for the root; None where a sync would not read it."""
    kept = state.get(ROOT_STATE_KEY)
    if not isinstance(kept, dict) or kept.get("serial") is None:
        return None
    if not root_worth_reading(kept.get("size"), int(kept.get("pages") or 0)):
        return None  # a small channel asks its pages: only the full sync knows
    if is_file_url(upstream) and not upstream_root_exists(upstream):
        return None
    async with pypi_fetcher(policy) as fetcher:
        response = await fetcher.get_page("the upstream's root index", upstream.rstrip("/") + "/", kept.get("etag"),
                                          kept.get("last_modified"), ROOT_ACCEPT)
    if response.status == 304:
        return str(kept["serial"])
    if not response.content_type.split(";", 1)[0].strip().lower().endswith("json"):
        return None
    serial = parse_root_serial(response.body)
    state.fetched[ROOT_STATE_KEY] = response  # a changed root: the sync that follows reads this one
    if serial is not None and serial == kept["serial"]:
        # Same content, new validators: the next probe gets its 304.
        state.put(ROOT_STATE_KEY, {**kept, "etag": response.etag, "last_modified": response.last_modified})
    return None if serial is None else str(serial)
