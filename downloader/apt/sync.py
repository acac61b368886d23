"""One sync of an APT channel: imported only when a sync runs (it brings the http client)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from downloader.apt.adapter import AptAdapter, AptCaches
from downloader.apt.options import AptOptions
from downloader.base import (
    AdapterState,
    ChannelSpec,
    FetchPolicy,
    Selection,
    StoreOutcome,
    UpstreamFile,
    store_files,
)
from downloader.fetch import Fetcher, FetchingSync
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


async def inrelease_cursor(channel: ChannelSpec, state: AdapterState, key: str, policy: FetchPolicy) -> str | None:
    """`AptCaches.cursor` as a sync would compute it now, from a conditional GET of each suite's InRelease.

    None when a suite was never synced or came from Release + Release.gpg
    (only the full sync reads those). Nothing is verified here: the hub
    compares the result with the cursor of a sync that verified those bytes.
    """
    options = AptOptions.from_json(dict(channel.options))
    caches = AptCaches.from_json(state.get(key) or {})
    kept = [caches.suites.get(suite) for suite in options.suites]
    if any(st is None or st.signature_sha256 is not None for st in kept):
        return None
    now = datetime.now(timezone.utc)
    if not options.allow_expired and any(st.valid_until and datetime.fromisoformat(st.valid_until) <= now
                                         for st in kept if st is not None):
        return None  # the full sync verifies again and refuses the expired Release
    async with Fetcher(policy) as fetcher:
        answers = await asyncio.gather(*(
            fetcher.get_page(f"{suite}: InRelease", f"{options.source(suite).uri}dists/{suite}/InRelease",
                             st.etag, st.last_modified)
            for suite, st in zip(options.suites, kept) if st is not None))
    refreshed = False
    for suite, st, answer in zip(options.suites, kept, answers, strict=True):
        assert st is not None
        if answer.status == 304:
            continue
        digest = hashlib.sha256(answer.body).hexdigest()
        state.fetched.setdefault(key, {})[suite] = answer  # a changed suite: the sync that follows reads this one
        if digest == st.release_sha256 and (answer.etag, answer.last_modified) != (st.etag, st.last_modified):
            refreshed = True  # same bytes, new validators: the next probe gets its 304
        caches.suites[suite] = replace(st, etag=answer.etag, last_modified=answer.last_modified,
                                       release_sha256=digest)
    if refreshed and caches.cursor == AptCaches.from_json(state.get(key) or {}).cursor:
        state.put(key, caches.to_json())
    return caches.cursor
