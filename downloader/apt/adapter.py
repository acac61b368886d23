"""The APT adapter: a channel's suites, verified, into a `downloader.base.Selection`.

Per suite: `InRelease` fetched conditionally (ETag / Last-Modified) and
verified with gpgv (falling back to `Release` + `Release.gpg` when the
upstream has no InRelease); then per component the `Packages` index the
Release names, checked against it, parsed; then the closure over all suites
together. What a sync learned is kept for the next one in `AptCaches` (the
hub stores it, as it stores the PyPI caches) with the verified files as
blobs: when an InRelease did not change, or its index is one already held,
nothing but the InRelease is asked for, and a 304 asks for nothing at all.
The stored InRelease is verified again each time (its Valid-Until may have
passed since).

The cursor (`AptCaches.cursor`) is the sha256 of every suite's InRelease:
equal cursors and equal options mean an equal selection.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from downloader.apt.closure import ClosureResult, Universe, resolve
from downloader.apt.options import AptOptions
from downloader.apt.packages import PackageRecord, parse_packages
from downloader.apt.release import (
    Release,
    check_release,
    choose_index,
    open_index,
    parse_release,
    prepare_keyrings,
    verify_detached,
    verify_inrelease,
)
from downloader.base import SelectedRelease, Selection, UpstreamFile
from downloader.fetch import NotFound
from reservoir.blobs import BlobStore


class PageLike(Protocol):
    status: int
    body: bytes
    etag: str | None
    last_modified: str | None


class Fetch(Protocol):
    """What the adapter asks of the transport (downloader.fetch.Fetcher has it)."""

    async def get_page(self, what: str, url: str, etag: str | None = None, last_modified: str | None = None,
                       accept: str = "") -> Any: ...

    async def get_bytes(self, what: str, url: str) -> bytes: ...


@dataclass
class SuiteState:
    """What the last sync verified for one suite: its InRelease (or Release) and index blobs."""

    etag: str | None
    last_modified: str | None
    release_sha256: str  # blob: the signed file as fetched (InRelease, or Release then Release.gpg)
    signature_sha256: str | None  # blob: Release.gpg when there was no InRelease
    indexes: dict[str, str] = field(default_factory=dict)  # index file sha256 (as the Release lists it) -> blob
    valid_until: str | None = None  # the verified Release's Valid-Until (ISO); the no-change probe checks it

    def to_json(self) -> dict[str, Any]:
        return {"etag": self.etag, "last_modified": self.last_modified, "release_sha256": self.release_sha256,
                "signature_sha256": self.signature_sha256, "indexes": dict(self.indexes),
                "valid_until": self.valid_until}

    @staticmethod
    def from_json(data: dict[str, Any]) -> SuiteState:
        return SuiteState(data.get("etag"), data.get("last_modified"), str(data["release_sha256"]),
                          data.get("signature_sha256"), dict(data.get("indexes", {})), data.get("valid_until"))


@dataclass
class AptCaches:
    suites: dict[str, SuiteState] = field(default_factory=dict)
    changed: bool = False
    # InRelease answers (200) the no-change probe just fetched, by suite: this sync reads them instead.
    fetched: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def cursor(self) -> str:
        return hashlib.sha256(json.dumps({s: st.release_sha256 for s, st in sorted(self.suites.items())})
                              .encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {suite: state.to_json() for suite, state in self.suites.items()}

    @staticmethod
    def from_json(data: dict[str, Any]) -> AptCaches:
        return AptCaches({suite: SuiteState.from_json(state) for suite, state in (data or {}).items()})


@dataclass
class AptAdapter:
    options: AptOptions
    blobs: BlobStore
    caches: AptCaches
    fetcher: Fetch
    scratch: Path  # for gpgv's files; the hub's tmp folder
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    indexes_fetched: int = 0
    labels: dict[str, tuple[str, str]] = field(default_factory=dict)  # suite -> its Release's Origin and Label

    async def select(self) -> Selection:
        indexes: list[list[PackageRecord]] = []
        states: dict[str, SuiteState] = {}
        with tempfile.TemporaryDirectory(dir=self.scratch, prefix="apt-") as tmp:
            # The suites are independent until the closure: their round trips overlap.
            # Each suite dearmors its keyrings into a folder of its own: two suites may name different keys.
            scratches = [Path(tmp) / f"suite-{n}" for n in range(len(self.options.suites))]
            for folder in scratches:
                folder.mkdir()
            done = await asyncio.gather(*(self._suite(suite, folder) for suite, folder in zip(self.options.suites, scratches)))
            for suite, (records, state) in zip(self.options.suites, done, strict=True):
                states[suite] = state
                indexes += records
        # Only a sync that verified every suite moves the caches on.
        for suite, state in states.items():
            if self.caches.suites.get(suite) != state:
                self.caches.suites[suite] = state
                self.caches.changed = True
        where = f"{', '.join(self.options.suites)} {' '.join(self.options.components)}"
        universe = Universe.build(indexes, self.options.arch, where)
        result = await asyncio.to_thread(resolve, universe, self.options.closure)
        return to_selection(result, {s.suite: s.uri for s in self.options.sources}, self.labels)

    async def _suite(self, suite: str, tmp: Path) -> tuple[list[list[PackageRecord]], SuiteState]:
        source = self.options.source(suite)
        keyrings = prepare_keyrings(source.keyrings, tmp)
        dist = f"{source.uri}dists/{suite}/"
        cached = self.caches.suites.get(suite)
        data, signature, state = await self._release_files(suite, dist, cached)
        if signature is None:
            what = f"{suite}: InRelease"
            verified = verify_inrelease(data, keyrings, tmp, what)
        else:
            what = f"{suite}: Release"
            verified = verify_detached(data, signature, keyrings, tmp, what)
        release = parse_release(verified.text, what)
        check_release(release, suite, self.now, self.options.allow_expired, what)
        state.valid_until = release.valid_until.isoformat() if release.valid_until else None
        self.labels[suite] = (release.fields.get("Origin", ""), release.fields.get("Label", ""))
        self._store(data)  # only once verified
        if signature is not None:
            self._store(signature)
        held = cached.indexes if cached is not None else {}
        out = []
        for component in self.options.components:
            records, entry_sha256, blob = await self._index(suite, component, release, dist, held)
            state.indexes[entry_sha256] = blob
            out.append(records)
        return out, state

    async def _release_files(self, suite: str, dist: str, cached: SuiteState | None
                             ) -> tuple[bytes, bytes | None, SuiteState]:
        """(Release data, detached signature or None, the state to keep): InRelease first, conditionally."""
        reuse = cached is not None and cached.signature_sha256 is None and self.blobs.has(cached.release_sha256)
        fetched = self.caches.fetched.pop(suite, None)
        try:
            response = fetched or await self.fetcher.get_page(f"{suite}: InRelease", dist + "InRelease",
                                                              cached.etag if reuse and cached else None,
                                                              cached.last_modified if reuse and cached else None)
        except NotFound:
            data = await self.fetcher.get_bytes(f"{suite}: Release", dist + "Release")
            signature = await self.fetcher.get_bytes(f"{suite}: Release.gpg", dist + "Release.gpg")
            return data, signature, SuiteState(None, None, hashlib.sha256(data).hexdigest(),
                                               hashlib.sha256(signature).hexdigest())
        if response.status == 304 and reuse and cached is not None:
            return self._blob(cached.release_sha256), None, SuiteState(
                cached.etag, cached.last_modified, cached.release_sha256, None)
        body = response.body
        return body, None, SuiteState(response.etag, response.last_modified, hashlib.sha256(body).hexdigest(), None)

    async def _index(self, suite: str, component: str, release: Release, dist: str,
                     held: dict[str, str]) -> tuple[list[PackageRecord], str, str]:
        """The component's records, the index's sha256 as the Release lists it, and its blob."""
        what = f"{suite}/{component}/binary-{self.options.arch}/Packages"
        choice = choose_index(release, component, self.options.arch, f"{suite}: Release")
        blob = held.get(choice.entry.sha256)
        if blob is not None and self.blobs.has(blob):
            data = self._blob(blob)
        else:
            data = await self.fetcher.get_bytes(what, dist + choice.fetch_path)
            self.indexes_fetched += 1
            blob = None
        text = await asyncio.to_thread(open_index, data, choice, what)
        records = await asyncio.to_thread(parse_packages, text, what, suite, component)
        if blob is None:
            blob = self._store(data)  # stored only once verified and read
        return records, choice.entry.sha256, blob

    def _blob(self, sha256: str) -> bytes:
        with self.blobs.open(sha256) as stream:
            return stream.read()

    def _store(self, data: bytes) -> str:
        return self.blobs.put_bytes(data)


def upstream_file(record: PackageRecord, uri: str) -> UpstreamFile:
    return UpstreamFile(
        filename=record.basename,
        url=uri + record.filename,
        sha256=record.sha256,
        size=record.size,
        meta={"architecture": record.arch, "upstream_path": record.filename},
    )


def release_meta(record: PackageRecord) -> dict[str, Any]:
    return {
        "architecture": record.arch,
        "control": record.control(),
        "suite": record.suite,
        "component": record.component,
        "source": record.source_name if record.source else None,
        "section": record.section or None,
        "priority": record.priority or None,
        "essential": record.essential,
        "multi_arch": record.multi_arch,
        "depends": record.depends or None,
        "pre_depends": record.pre_depends or None,
        "recommends": record.recommends or None,
        "provides": record.provides or None,
    }


def _labels_meta(origin: str, label: str) -> dict[str, str]:
    return {key: value for key, value in (("origin", origin), ("label", label)) if value}


def to_selection(result: ClosureResult, uris: dict[str, str],
                 labels: Mapping[str, tuple[str, str]] | None = None) -> Selection:
    """The closure's records as releases (one `.deb` each); name==version twice is a warning, first kept.

    `labels`: each suite's upstream Origin and Label, kept in the meta so that the site's Release
    carries them (a client's pins on `o=Debian` keep matching).
    """
    selection = Selection(warnings=list(result.warnings))
    for record in result.chosen:
        key = f"{record.name}=={record.version}"
        if key in selection.releases:
            kept = selection.releases[key].files[0]
            if kept.sha256 != record.sha256:
                selection.warnings.append(f"{record.name} {record.version}: {record.suite} has another file "
                                          f"than {selection.releases[key].meta['suite']}; keeping the latter")
            continue
        selection.add(SelectedRelease(
            name=record.name,
            display_name=record.name,
            version=record.version,
            files=[upstream_file(record, uris[record.suite])],
            meta={**release_meta(record), **_labels_meta(*(labels or {}).get(record.suite, ("", "")))},
        ))
    return selection
