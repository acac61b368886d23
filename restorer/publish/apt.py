"""The site's APT trees: one signed repository per APT channel, under `/apt/<channel>/`.

What clients see (``trees/apt/<channel>/``)::

    dists/<suite>/InRelease, Release, Release.gpg       the aggregates, signed with the site's key
    dists/<suite>/<component>/binary-<arch>/Packages{,.gz,.xz}
    dists/<suite>/<component>/binary-<arch>/by-hash -> ../../../../by-hash
    by-hash/SHA256/<sha256>                              every index any kept generation listed
    pool/<component>/<prefix>/<source>/<sha256>/<file>.deb   hard links to the blobs
    key.gpg                                              the site's public key, for signed-by=

A leaf is one (channel, suite, component) folder: its `binary-<arch>`
Packages files (a channel has one architecture; `Architecture: all`
packages are listed in it, as Debian does). The suite names and the
components are the upstream's, so a client's `sources.list` line needs only
its URL changed. The aggregates (Release per suite) are made from the
leaves' cached digests, as reprepro's targets do: a publish renders only
the components a change touched.

The Release lists exactly the files that exist: no `Translation-*`,
`Contents-*`, `dep11` or `i18n/Index`, which apt then never asks for (apt
fetches an optional index only when the Release names it).

`by-hash` is shared by all generations and each index stays there until the
generation that listed it is pruned, so an `apt-get update` that read the
InRelease before a swap still finds the indices it names.

Channel options read here (the hub's channel options, from the bundle):
`arch` (default amd64), `keep` (newest versions served per package and
suite, 0 for all), `hold_uninstallable` (a package whose dependencies the
published set cannot satisfy is held back instead of only reported),
`valid_days` (a `Valid-Until` so many days ahead; off by default),
`origin` and `label` (the Release's; by default the upstream suite's, which
the hub keeps in each release's meta, so a client's pins on `o=Debian` keep
matching; `Reservoir` and the channel's name when the upstream gave none).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import marshal
import os
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from functools import cmp_to_key
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NamedTuple

from debian.debian_support import version_compare
from sqlalchemy import String, cast, select
from sqlalchemy.orm import Session

from reservoir.blobs import BlobStore
from reservoir.errors import ReservoirError
from reservoir.models import (
    Artifact,
    ArtifactState,
    Channel,
    Gate,
    Release,
    ReleaseState,
)
from restorer.gpgkey import SiteKey, site_key
from restorer.publish import Leaf, ReleaseRef
from restorer.publish.apt_index import ChunkCache, digests, render_index
from restorer.publish.layout import ObjectStore, generations, read_state
from restorer.publish.tree import live_generation, safe_join

log = logging.getLogger(__name__)

KIND = "apt"
DISTS = "dists"
BY_HASH = "by-hash"
INSTALLABILITY_GROUP = "reservoir.installability"
QUERY_CHUNK = 500
CHUNK_CACHE = ".apt-chunks"  # beside the generations; a dot name no channel can take
CHANNEL_CACHE = ".apt-channels"
CHANNEL_CACHE_FORMAT = 2
# Fields a stanza gets from the site, not the upstream: where the file is and what it hashes to here.
_SITE_FIELDS = frozenset({"filename", "size", "md5sum", "sha1", "sha256", "sha512"})

Checker = Callable[..., dict[tuple[str, str, str], str]]


class AptPublishError(ReservoirError):
    """An APT tree cannot be published as the catalog stands."""


@dataclass(frozen=True)
class ChannelPolicy:
    """What a channel's options say about its published repository."""

    arch: str = "amd64"
    keep: int = 0
    hold_uninstallable: bool = False
    valid_days: int = 0
    origin: str = ""  # empty: the upstream suite's, else DEFAULT_ORIGIN
    label: str = ""  # empty: the upstream suite's, else the channel's name

    @staticmethod
    def from_options(name: str, options: Mapping[str, Any] | None) -> ChannelPolicy:
        options = options or {}

        def number(key: str) -> int:
            value = options.get(key, 0) or 0
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise AptPublishError(f"channel {name}: option {key} must be a whole number >= 0, not {value!r}",
                                      hint="fix the channel on the hub and send a new bundle")
            return value

        def word(key: str, default: str) -> str:
            value = options.get(key) or default
            if not isinstance(value, str) or "\n" in value or len(value) > 128:
                raise AptPublishError(f"channel {name}: option {key} must be one line of text")
            return value

        return ChannelPolicy(word("arch", "amd64"), number("keep"), bool(options.get("hold_uninstallable")),
                             number("valid_days"), word("origin", ""), word("label", ""))


class Package(NamedTuple):
    """One `.deb` the catalog publishes in an APT channel (a tuple: a republish makes one per release from the cache)."""

    name: str
    version: str
    arch: str
    suite: str
    component: str
    source: str
    control: str
    filename: str
    sha256: str
    size: int
    meta: Mapping[str, Any]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.name, self.version, self.arch)

    @property
    def pool_path(self) -> str:
        """Debian's pool layout, one folder per content: a path never names two contents, even across publishes."""
        prefix = self.source[:4] if self.source.startswith("lib") and len(self.source) > 3 else self.source[0]
        return f"pool/{self.component}/{prefix}/{self.source}/{self.sha256}/{self.filename}"


def leaf_key(channel: str, suite: str, component: str) -> str:
    return f"{channel}/{DISTS}/{suite}/{component}"


# One stanza: field lines (a name of printable ASCII but the colon, then the value) and folded lines.
_STANZA_RE = re.compile(r"[!-9;-~]+:[^\n]*(?:\n(?:[!-9;-~]+:[^\n]*|[ \t][^\n]*))*")
_SITE_LINES_RE = re.compile(r"^(?:Filename|Size|MD5sum|SHA1|SHA256|SHA512):[^\n]*\n(?:[ \t][^\n]*\n)*",
                            re.MULTILINE | re.IGNORECASE)
_IDENTITY_RE = re.compile(r"^(Package|Version|Architecture):[ \t]*([^\n]*?)[ \t]*$", re.MULTILINE)


def site_stanza(package: Package, channel: str) -> bytes:
    """The upstream's stanza with the site's Filename, Size and SHA256; refuses one that is not one stanza of this package."""
    control = package.control.rstrip("\n")
    where = f"{channel}: {package.name} {package.version}"
    if not control.startswith("Package:") or "\r" in control:
        raise AptPublishError(f"{where}: its stanza does not start with Package")
    if _STANZA_RE.fullmatch(control) is None:
        bad = next((n for n, line in enumerate(control.split("\n"), 1)
                    if not re.match(r"[!-9;-~]+:|[ \t]", line)), 0)
        raise AptPublishError(f"{where}: stanza line {bad} is no field")
    seen: dict[str, str] = {}
    for name, value in _IDENTITY_RE.findall(control):
        if name in seen:
            raise AptPublishError(f"{where}: its stanza gives {name} twice")
        seen[name] = value
    for name, wanted in (("Package", package.name), ("Version", package.version), ("Architecture", package.arch)):
        if seen.get(name) != wanted:
            raise AptPublishError(f"{where}: its stanza says {name} {seen.get(name)!r}, not {wanted!r}")
    kept = _SITE_LINES_RE.sub("", control + "\n")
    return (f"{kept}Filename: {package.pool_path}\nSize: {package.size}\nSHA256: {package.sha256}\n\n").encode()


def _version_order(a: Package, b: Package) -> int:
    return version_compare(a.version, b.version)


def keep_newest(packages: Iterable[Package], keep: int) -> list[Package]:
    """Per suite, component, name and architecture, the `keep` newest versions (all when 0)."""
    if not keep:
        return list(packages)
    groups: dict[tuple[str, str, str, str], list[Package]] = defaultdict(list)
    for package in packages:
        groups[(package.suite, package.component, package.name, package.arch)].append(package)
    out = []
    for group in groups.values():
        group.sort(key=cmp_to_key(_version_order), reverse=True)
        out += group[:keep] if keep else group
    return out


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic GC while a channel's thousands of records are made: they hold no cycles, and its passes over them
    were a fifth of a republish."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def installability_checker() -> Checker | None:
    """The APT relation rules, from the ecosystem's plug-in (`reservoir.installability`), so the site imports no adapter."""
    for ep in entry_points(group=INSTALLABILITY_GROUP):
        if ep.name == KIND:
            return ep.load()
    return None


# What the installability check reads of a release's meta (the rest, the control text above all, is the stanza's).
_RELATION_META = ("architecture", "multi_arch", "depends", "pre_depends", "recommends", "provides", "essential",
                  "priority", "section", "source", "suite", "component", "origin", "label")
DEFAULT_ORIGIN = "Reservoir"
_ONE_LINE_RE = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


def upstream_labels(packages: Iterable[Package]) -> tuple[str, str]:
    """The upstream suite's Origin and Label, as the hub kept them in the packages' meta ("" where none is usable)."""
    found = ["", ""]
    for package in packages:
        for i, key in enumerate(("origin", "label")):
            value = package.meta.get(key)
            if not found[i] and isinstance(value, str) and _ONE_LINE_RE.fullmatch(value):
                found[i] = value
        if all(found):
            break
    return found[0], found[1]
Stamp = tuple[str, str]  # a release's updated_at and its .deb's sha256: what its cached entry was made from


class Entry(NamedTuple):
    """A release as the channel cache keeps it: its served stanza (or why it is not served) and its relations."""

    stamp: Stamp
    package: Package | None
    stanza: bytes | None
    problem: str

    def to_raw(self) -> tuple[Any, ...]:
        return (self.stamp, None if self.package is None else tuple(self.package), self.stanza, self.problem)

    @staticmethod
    def from_raw(raw: tuple[Any, ...]) -> Entry:
        stamp, fields, stanza, problem = raw
        return Entry(stamp, None if fields is None else Package(*fields), stanza, problem)


def _entry(channel: str, stamp: Stamp, name: str, version: str, meta: Mapping[str, Any] | None, filename: str,
           sha256: str, size: int | None) -> Entry:
    meta = meta or {}
    try:
        package = Package(
            name=name, version=version, arch=str(meta["architecture"]), suite=str(meta["suite"]),
            component=str(meta["component"]), source=str(meta.get("source") or name),
            control=str(meta["control"]), filename=filename, sha256=sha256, size=int(size or 0),
            meta={k: meta[k] for k in _RELATION_META if k in meta},
        )
    except (KeyError, TypeError, ValueError) as exc:
        return Entry(stamp, None, None, f"{channel}: {name} {version}: no {exc} in its record")
    try:
        stanza = site_stanza(package, channel)
    except AptPublishError as exc:
        return Entry(stamp, None, None, exc.message)
    return Entry(stamp, package._replace(control="", meta=dict(package.meta)), stanza, "")


def _served_rows(channel: Channel, *columns: Any) -> Any:
    return (
        # updated_at as the database writes it: a stamp to compare, not a datetime to parse 5,000 times.
        select(Release.id, cast(Release.updated_at, String), Artifact.sha256, *columns)
        .join(Artifact, Artifact.release_id == Release.id)
        .where(Release.channel_id == channel.id, Release.state == ReleaseState.ACTIVE, Release.gate == Gate.ALLOWED,
               Artifact.state == ArtifactState.STORED, Artifact.filename.like("%.deb"))
        .order_by(Release.id, Artifact.id)
    )


def _stamps(session: Session, channel: Channel) -> dict[int, Stamp]:
    """Each served release's stamp, from three plain columns (a republish reads no more of the unchanged ones)."""
    out: dict[int, Stamp] = {}
    for release_id, updated, sha256 in session.execute(_served_rows(channel)):
        if release_id not in out:  # a release's first .deb is its file
            out[release_id] = (updated, sha256)
    return out


def _entries(session: Session, channel: Channel, ids: Sequence[int] | None) -> dict[int, Entry]:
    """The entries of the releases `ids` (None: every served one), read as plain columns, not ORM objects."""
    columns = (Release.name, Release.version, Release.meta, Artifact.filename, Artifact.size)
    queries = [_served_rows(channel, *columns)] if ids is None else [
        _served_rows(channel, *columns).where(Release.id.in_(ids[i : i + QUERY_CHUNK]))
        for i in range(0, len(ids), QUERY_CHUNK)
    ]
    out: dict[int, Entry] = {}
    for query in queries:
        for release_id, updated, sha256, name, version, meta, filename, size in session.execute(query):
            if release_id not in out:
                out[release_id] = _entry(channel.name, (updated, sha256), name, version, meta, filename,
                                         sha256, size)
    return out


@dataclass
class ChannelCache:
    """What the last publish of a channel read and judged, beside the trees: a republish reads, rewrites and
    judges only the releases whose stamp changed (and, for the check, what depends on them)."""

    releases: dict[int, Entry] = field(default_factory=dict)
    served: list[tuple[str, str, str]] = field(default_factory=list)  # the keys the check judged
    verdicts: dict[tuple[str, str, str], str] | None = None  # None: not judged as a whole (hold)

    @staticmethod
    def load(path: Path | None) -> ChannelCache | None:
        if path is None:
            return None
        try:
            raw = marshal.loads(path.read_bytes())
            if raw[0] != CHANNEL_CACHE_FORMAT:
                return None
            _, releases, served, verdicts = raw
            return ChannelCache({rid: Entry.from_raw(e) for rid, e in releases.items()},
                                [tuple(k) for k in served], verdicts)  # type: ignore[misc]
        except (OSError, EOFError, ValueError, TypeError, IndexError):
            return None  # missing or unreadable: the channel is read whole

    def save(self, path: Path | None) -> None:
        if path is None:
            return
        raw = (CHANNEL_CACHE_FORMAT, {rid: e.to_raw() for rid, e in self.releases.items()}, self.served,
               self.verdicts)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".tmp-{uuid.uuid4().hex[:8]}"
        tmp.write_bytes(marshal.dumps(raw))
        os.replace(tmp, path)


@dataclass
class AptPublisher:
    """The APT trees of a site (see the module docstring); a leaf is one component of one suite of one channel."""

    kind: str = KIND
    root: Path | None = None  # trees/apt, once bound
    keys_dir: Path | None = None
    cache: ChunkCache = field(default_factory=ChunkCache)
    report: list[str] = field(default_factory=list)  # what this publish found uninstallable or unusable
    held: list[str] = field(default_factory=list)
    _key: SiteKey | None = field(default=None, repr=False)
    _full: bool = False
    _channel_caches: set[Path] = field(default_factory=set)  # written by this publish

    def bind(self, app: Any) -> None:
        self.root = app.home.trees_dir / KIND
        self.keys_dir = app.home.keys_dir
        self.cache = ChunkCache(self.root / CHUNK_CACHE)

    # -- leaves

    def pages_for(self, release: ReleaseRef) -> Iterable[str]:
        suite, component = release.meta.get("suite"), release.meta.get("component")
        if not isinstance(suite, str) or not isinstance(component, str):
            return ()
        return (leaf_key(release.channel, suite, component),)

    def leaf_keys(self, session: Session) -> Iterable[str]:
        self._full = True
        keys: set[str] = set()
        rows = session.execute(
            select(Channel.name, Release.meta["suite"].as_string(), Release.meta["component"].as_string())
            .join(Channel)
            .where(Channel.kind == KIND, Release.state == ReleaseState.ACTIVE, Release.gate == Gate.ALLOWED)
            .distinct()
        )
        for channel, suite, component in rows:
            if suite and component:
                keys.add(leaf_key(channel, suite, component))
        return keys

    def render_leaves(self, session: Session, blobs: BlobStore, keys: Sequence[str]) -> Iterable[Leaf]:
        with paused_gc():
            return self._render_leaves(session, blobs, keys)

    def _render_leaves(self, session: Session, blobs: BlobStore, keys: Sequence[str]) -> list[Leaf]:
        by_channel: dict[str, set[str]] = defaultdict(set)
        for key in keys:
            by_channel[key.split("/", 1)[0]].add(key)
        leaves: list[Leaf] = []
        for name in sorted(by_channel):
            channel = session.scalars(select(Channel).where(Channel.name == name, Channel.kind == KIND)).one_or_none()
            if channel is None:
                continue  # gone: its leaves are removed
            leaves += self._channel_leaves(session, blobs, channel, by_channel[name])
        return leaves

    def _channel_cache_path(self, channel: str) -> Path | None:
        if self.root is None:
            return None
        return self.root / CHANNEL_CACHE / hashlib.sha256(channel.encode()).hexdigest()[:32]

    def _channel_leaves(self, session: Session, blobs: BlobStore, channel: Channel, keys: set[str]) -> list[Leaf]:
        policy = ChannelPolicy.from_options(channel.name, channel.options)
        path = self._channel_cache_path(channel.name)
        # A full publish reads everything again: it is also how a site gets past a cache it doubts.
        cache = None if self._full else ChannelCache.load(path)
        if cache is None:
            entries = _entries(session, channel, None)
            fresh = set(entries)
        else:
            stamps = _stamps(session, channel)
            entries = {rid: cache.releases[rid] for rid, stamp in stamps.items()
                       if rid in cache.releases and cache.releases[rid].stamp == stamp}
            fresh = set(stamps) - set(entries)
            entries.update(_entries(session, channel, sorted(fresh)))
        problems = [e.problem for _, e in sorted(entries.items()) if e.problem]
        served = [e.package for _, e in sorted(entries.items())
                  if e.package is not None and e.package.arch in (policy.arch, "all")]
        served = keep_newest(served, policy.keep)
        stanzas = {e.package.key: e.stanza for e in entries.values() if e.package is not None and e.stanza}
        places = {(p.suite, p.component) for p in served}
        wanted_places = {place for place in places if leaf_key(channel.name, *place) in keys}
        wanted = [p for p in served if (p.suite, p.component) in wanted_places]
        unfit, verdicts = self._check(channel.name, policy, served, wanted, cache, {
            e.package.key for rid, e in entries.items() if rid in fresh and e.package is not None})
        ChannelCache(entries, [p.key for p in served], verdicts).save(path)
        if path is not None:
            self._channel_caches.add(path)
        for key, why in sorted(unfit.items()):
            if policy.hold_uninstallable:
                self.held.append(f"{channel.name}: {why}")
                log.warning("apt %s: held back, apt could not install it from this site: %s", channel.name, why)
            else:
                log.warning("apt %s: served, but apt could not install it from this site: %s "
                            "(hold_uninstallable holds such packages back)", channel.name, why)
        self.report += problems + [f"{channel.name}: {why}" for why in unfit.values()]
        for problem in problems:
            log.warning("apt: not served: %s", problem)
        if policy.hold_uninstallable:
            wanted = [p for p in wanted if p.key not in unfit]
        by_leaf: dict[str, list[Package]] = defaultdict(list)
        for package in wanted:
            by_leaf[leaf_key(channel.name, package.suite, package.component)].append(package)
        return [self._leaf(channel.name, policy, key, group, stanzas, blobs) for key, group in sorted(by_leaf.items())]

    def _check(self, channel: str, policy: ChannelPolicy, served: list[Package], wanted: list[Package],
               cache: ChannelCache | None, fresh: set[tuple[str, str, str]]) -> tuple[dict[tuple[str, str, str], str], dict[tuple[str, str, str], str] | None]:
        """The wanted packages apt could not install, and the verdicts on the whole set to keep (None with hold).

        Without hold the whole set is judged, against the cache's verdicts when there are some, so
        that the next publish judges only what its change can affect.
        """
        checker = installability_checker()
        if checker is None:
            log.warning("apt %s: no installability check installed (entry point %s apt); published unchecked",
                        channel, INSTALLABILITY_GROUP)
            return {}, None
        where = f"the site's {channel}"
        entries = [(p.name, p.version, p.meta) for p in served]
        if policy.hold_uninstallable:
            unfit = checker(entries, policy.arch, where, check=[p.key for p in wanted], hold=True)
            return unfit, None
        if cache is None or cache.verdicts is None:
            verdicts = checker(entries, policy.arch, where)
        else:
            # What entered or left the judged set, or was read again (another .deb, other meta).
            now = {p.key for p in served}
            before = set(cache.served)
            gone = {e.package.key: e.package for e in cache.releases.values() if e.package is not None
                    and e.package.key in before and (e.package.key not in now or e.package.key in fresh)}
            changed = [(p.name, p.version, p.meta) for p in served if p.key not in before or p.key in fresh]
            changed += [(p.name, p.version, p.meta) for p in gone.values()]
            previous = {key: cache.verdicts.get(key, "") for key in before if key not in fresh}
            verdicts = checker(entries, policy.arch, where, previous=previous, changed=changed)
        keys = {p.key for p in wanted}
        return {key: why for key, why in verdicts.items() if key in keys}, verdicts

    def _leaf(self, channel: str, policy: ChannelPolicy, key: str, packages: list[Package],
              stanzas: Mapping[tuple[str, str, str], bytes], blobs: BlobStore) -> Leaf:
        packages.sort(key=lambda p: (p.name, p.version, p.arch))
        index = render_index([(p.name, stanzas[p.key]) for p in packages], self.cache)
        folder = f"binary-{policy.arch}"
        pages = {f"{folder}/Packages": index.plain, f"{folder}/Packages.gz": index.gz,
                 f"{folder}/Packages.xz": index.xz}
        files = {f"{channel}/{p.pool_path}": p.sha256 for p in packages}
        listed: dict[str, list[object]] = {}
        for name, content in pages.items():
            digest = digests(content)
            listed[name] = digest.to_json()
            files[self._by_hash(channel, digest.sha256, content, blobs)] = digest.sha256
        first = packages[0]
        origin, label = upstream_labels(packages)
        summary = {"s": first.suite, "c": first.component, "a": [policy.arch], "f": listed,
                   "o": policy.origin or origin or DEFAULT_ORIGIN, "l": policy.label or label or channel,
                   "v": policy.valid_days}
        return Leaf(key=key, pages=pages, files=files, summary=json.dumps(summary, sort_keys=True),
                    links={f"{folder}/{BY_HASH}": f"{channel}/{BY_HASH}"})

    def _by_hash(self, channel: str, sha256: str, content: bytes, blobs: BlobStore) -> str:
        """`<channel>/by-hash/SHA256/<sha256>`, written now (the orchestration links only blobs it lacks)."""
        relative = f"{channel}/{BY_HASH}/SHA256/{sha256}"
        if self.root is None:
            blobs.put_bytes(content)  # not bound (a bare publish_kind): let the orchestration link it from the store
            return relative
        path = safe_join(self.root, relative)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".tmp-{uuid.uuid4().hex[:8]}"
            tmp.write_bytes(content)
            os.replace(tmp, path)
        return relative

    # -- aggregates

    def _site_key(self) -> SiteKey:
        if self._key is None:
            if self.keys_dir is None:
                raise AptPublishError("the APT publisher was not given the site's home, so it cannot sign",
                                      hint="publish through `reservoir publish` or an import")
            self._key = site_key(self.keys_dir)
        return self._key

    def render_aggregates(self, summaries: Mapping[str, str]) -> Mapping[str, bytes]:
        suites: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for key, raw in summaries.items():
            summary = json.loads(raw)
            suites[(key.split("/", 1)[0], summary["s"])].append(summary)
        out: dict[str, bytes] = {}
        if not suites:
            return out
        key = self._site_key()
        now = datetime.now(timezone.utc)
        for (channel, suite), leaves in sorted(suites.items()):
            text = release_text(suite, leaves, now).encode()
            base = f"{channel}/{DISTS}/{suite}"
            out[f"{base}/Release"] = text
            out[f"{base}/InRelease"] = key.clearsign(text)
            out[f"{base}/Release.gpg"] = key.detach_sign(text)
        public = key.public_binary()
        for channel in sorted({channel for channel, _ in suites}):
            out[f"{channel}/key.gpg"] = public
        if self._full:
            self.cache.sweep()
            self._sweep_channel_caches()
        return out

    def _sweep_channel_caches(self) -> None:
        """After a full publish, which wrote the cache of every channel it serves: those of channels gone."""
        folder = None if self.root is None else self.root / CHANNEL_CACHE
        if folder is None or not folder.is_dir():
            return
        for path in folder.iterdir():
            if path not in self._channel_caches:
                path.unlink(missing_ok=True)

    # -- collection

    def files_in_use(self, session: Session, files: Mapping[str, str]) -> set[str]:
        used: set[str] = set()
        pool: dict[tuple[str, str], list[str]] = defaultdict(list)
        hashed = []
        for path in files:
            parts = path.split("/")
            if len(parts) > 2 and parts[1] == "pool":
                pool[(parts[0], parts[-2])].append(path)
            elif len(parts) == 4 and parts[1] == BY_HASH:
                hashed.append(path)
        live_files = self._live_files() if hashed else None
        for path in hashed:
            if live_files is None or path in live_files:
                used.add(path)
        shas = sorted({sha for _, sha in pool})
        for i in range(0, len(shas), QUERY_CHUNK):
            rows = session.execute(
                select(Channel.name, Artifact.sha256)
                .select_from(Artifact)
                .join(Release)
                .join(Channel)
                .where(
                    Artifact.sha256.in_(shas[i : i + QUERY_CHUNK]),
                    Artifact.state == ArtifactState.STORED,
                    Channel.kind == KIND,
                    Release.state == ReleaseState.ACTIVE,
                    Release.gate == Gate.ALLOWED,
                )
            )
            for channel, sha in rows:
                used.update(pool.get((channel, sha), ()))
        return used

    def _live_files(self) -> set[str] | None:
        """Every file a surviving generation's leaves name (None when unknown: keep everything)."""
        if self.root is None:
            return None
        store = ObjectStore(self.root)
        named: set[str] = set()
        for generation in generations(self.root).values():
            state = read_state(generation)
            if state is None:
                continue
            for node in state.shards.values():
                try:
                    entries = store.node_entries(node)
                except FileNotFoundError:
                    continue
                for entry in entries.values():
                    named.update(entry.files)
        return named


def release_text(suite: str, leaves: Sequence[Mapping[str, Any]], now: datetime) -> str:
    """A suite's Release: the fields apt reads, and every index file with its MD5 and SHA256."""
    first = leaves[0]
    components = sorted({leaf["c"] for leaf in leaves})
    archs = sorted({arch for leaf in leaves for arch in leaf["a"]})
    files: dict[str, list[Any]] = {}
    for leaf in leaves:
        for name, digest in leaf["f"].items():
            files[f"{leaf['c']}/{name}"] = digest
    lines = [
        f"Origin: {first['o']}",
        f"Label: {first['l']}",
        f"Suite: {suite}",
        f"Codename: {suite}",
        f"Date: {format_datetime(now.replace(microsecond=0), usegmt=False).replace('+0000', 'UTC')}",
    ]
    valid_days = max(int(leaf.get("v") or 0) for leaf in leaves)
    if valid_days:
        until = (now + timedelta(days=valid_days)).replace(microsecond=0)
        lines.append(f"Valid-Until: {format_datetime(until).replace('+0000', 'UTC')}")
    lines += [
        f"Architectures: {' '.join(archs)}",
        f"Components: {' '.join(components)}",
        f"Description: {first['l']} {suite}, published by Reservoir",
        "Acquire-By-Hash: yes",
        "No-Support-for-Architecture-all: Packages",
        "Changelogs: no",
        "MD5Sum:",
        *(f" {files[name][1]} {files[name][0]:>16} {name}" for name in sorted(files)),
        "SHA256:",
        *(f" {files[name][2]} {files[name][0]:>16} {name}" for name in sorted(files)),
    ]
    return "\n".join(lines) + "\n"


def live_suites(root: Path, channel: str) -> list[str]:
    """The suites the live tree publishes for `channel` (what `apt sources` prints)."""
    generation = live_generation(root)
    if generation is None:
        return []
    state = read_state(generation)
    if state is None:
        return []
    prefix = f"{channel}/{DISTS}/"
    return sorted(path[len(prefix) : -len("/InRelease")] for path in state.aggregates
                  if path.startswith(prefix) and path.endswith("/InRelease"))
