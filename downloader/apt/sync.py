"""One sync of an APT channel: imported only when a sync runs (it brings the http client)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from downloader.apt.adapter import AptAdapter, AptCaches
from downloader.apt.options import AptOptions
from downloader.base import ChannelSpec, FetchPolicy, Selection, StoreOutcome, UpstreamFile, store_files
from downloader.fetch import FetchingSync
from reservoir.blobs import BlobStore


@dataclass
class AptSync(FetchingSync):
    """One sync of an APT channel: one connection pool, the adapter over it, `.deb`s fetched verified."""

    channel: ChannelSpec
    blobs: BlobStore
    caches: AptCaches
    policy: FetchPolicy
    scratch: Path
    indexes_fetched: int = field(default=0, init=False)

    async def select(self, on_progress: Callable[[], None]) -> Selection:
        options = AptOptions.from_json(dict(self.channel.options))
        self.scratch.mkdir(parents=True, exist_ok=True)
        adapter = AptAdapter(options, self.blobs, self.caches, self.fetcher, self.scratch)
        selection = await adapter.select()
        self.indexes_fetched = adapter.indexes_fetched
        for _suite in options.suites:
            on_progress()
        selection.cursor = self.caches.cursor
        return selection

    async def store(self, files: list[UpstreamFile], on_done: Callable[[int], None]) -> list[StoreOutcome]:
        return await store_files(self.fetcher, self.blobs, files, on_done)
