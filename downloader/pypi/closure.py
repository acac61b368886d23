"""Choose releases: the requested projects and the closure of what they need.

Per target environment, every requirement reaching a project is a demand.
A requested project gets its newest `latest` versions that satisfy it. A
dependency gets the newest version satisfying each demand and the newest
satisfying all its demands at once, so the answer pip reaches without
backtracking is present whichever requirement pip meets first. Demands only
grow, so repeating "choose, read metadata, collect demands" reaches a fixed
point; each round fetches its pages and metadata concurrently.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from downloader.pypi.files import SDIST, WHEEL, Distribution, normalize, parse_distribution
from downloader.pypi.index import IndexFile, ProjectPage
from downloader.pypi.metadata import CoreMetadata
from downloader.pypi.targets import Target
from reservoir.errors import ConfigError, IntegrityError, ReservoirError


@dataclass(frozen=True)
class Demand:
    project: str  # normalized
    target: Target
    specifier: str
    extras: frozenset[str]
    requested: bool

    @cached_property
    def pinned(self) -> bool:
        """An exact pin (`==1.2`, `===1.2`) may take a yanked release (PEP 592)."""
        specs = list(SpecifierSet(self.specifier))
        return len(specs) == 1 and specs[0].operator in ("==", "===") and not specs[0].version.endswith(".*")


@dataclass(frozen=True)
class Candidate:
    """One file of a page that could be mirrored, with its parsed name."""

    file: IndexFile
    dist: Distribution


@dataclass
class Chosen:
    """A release chosen for some targets, with the files those targets install."""

    project: str
    display_name: str
    version: Version
    files: dict[str, IndexFile] = field(default_factory=dict)
    targets: set[Target] = field(default_factory=set)
    metadata: CoreMetadata | None = None
    failure: str = ""


@dataclass
class ClosureResult:
    chosen: dict[tuple[str, Version], Chosen]
    warnings: list[str]


T = TypeVar("T")
PagesFn = Callable[[list[str], dict[str, str]], Awaitable[dict[str, ProjectPage]]]
MetadataFn = Callable[[str, str, IndexFile, Distribution], Awaitable[CoreMetadata | None]]


async def gather_all(jobs: Iterable[Awaitable[T]]) -> list[T]:
    """Run `jobs` concurrently; after all ended, raise the first error if any.

    Unlike a bare gather, no job is left running (or its error unread) when one fails.
    """
    results = await asyncio.gather(*jobs, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def parse_requirement(text: str, where: str = "") -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        at = f" in {where}" if where else ""
        cause = str(exc).splitlines()[0] if str(exc) else "not PEP 508"
        raise ConfigError(f"invalid requirement {text!r}{at}: {cause}", hint="use PEP 508, e.g. 'requests>=2.31'") from None


def _marker_holds(marker: Marker, target: Target, extras: frozenset[str]) -> bool:
    """Whether `marker` holds on `target` with any of `extras` (or none) requested."""
    env = target.marker_environment
    try:
        return any(marker.evaluate({**env, "extra": extra}) for extra in ("", *sorted(extras)))
    except Exception:  # noqa: BLE001 - a marker packaging cannot evaluate: keep the dependency, to be safe
        return True


def _is_yanked(candidate: Candidate) -> bool:
    return candidate.file.yanked is not False


@dataclass
class Closure:
    """One resolution of a channel; `run` does the work."""

    targets: list[Target]
    latest: int
    sdists: bool
    fetch_pages: PagesFn
    read_metadata: MetadataFn
    pages: dict[str, ProjectPage] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    _required_by: dict[str, str] = field(default_factory=dict)
    _metadata: dict[tuple[str, Version], CoreMetadata | None] = field(default_factory=dict)
    _failures: dict[tuple[str, Version], str] = field(default_factory=dict)
    _candidates: dict[str, list[Candidate]] = field(default_factory=dict)
    _extras: dict[tuple[str, Target], set[str]] = field(default_factory=dict)
    _installable_cache: dict[tuple[str, Target, bool], dict[Version, list[Candidate]]] = field(default_factory=dict)

    async def run(self, requirements: list[Requirement]) -> ClosureResult:
        demands = {d for req in requirements for d in self._demands_of(req, self.targets, frozenset(), True)}
        for req in requirements:
            self._required_by.setdefault(normalize(req.name), "")
        while True:
            await self._prefetch(demands)
            chosen = self._choose(demands)
            await self._ensure_metadata(chosen.values())
            grown = demands | self._dependencies(chosen.values(), demands)
            if grown == demands:
                break
            demands = grown
        for key, release in chosen.items():
            release.metadata = self._metadata.get(key)
            release.failure = self._failures.get(key, "") or self._missing_dependencies(release)
        self._check_requested(requirements, chosen)
        return ClosureResult(chosen, self.warnings)

    def _demands_of(self, req: Requirement, targets: Iterable[Target], extras: frozenset[str],
                    requested: bool) -> list[Demand]:
        out = []
        for target in targets:
            if req.marker is not None and not _marker_holds(req.marker, target, extras):
                continue
            out.append(Demand(normalize(req.name), target, str(req.specifier), frozenset(map(normalize, req.extras)),
                              requested))
        return out

    async def _prefetch(self, demands: set[Demand]) -> None:
        """Per project, concurrently: its page, then the metadata of what it would choose.

        Chaining the two per project, instead of all pages then all metadata,
        saves a wait for the slowest page in every round.
        """
        by_project: dict[str, set[Demand]] = defaultdict(set)
        for demand in demands:
            by_project[demand.project].add(demand)
        await gather_all(self._prefetch_project(project, group) for project, group in sorted(by_project.items()))

    async def _prefetch_project(self, project: str, demands: set[Demand]) -> None:
        if project not in self.pages:
            page = (await self.fetch_pages([project], self._required_by))[project]
            self.pages[project] = page
            self._candidates[project] = self._candidates_of(page)
        await self._ensure_metadata(self._choose(demands).values())

    def _candidates_of(self, page: ProjectPage) -> list[Candidate]:
        out = []
        for file in page.files:
            dist = parse_distribution(file.filename)
            if dist is None or dist.name != page.project:
                continue  # eggs, installers, or another project's file
            if dist.packagetype == SDIST and not self.sdists:
                continue
            if file.sha256 is None:
                self.warnings.append(f"{page.project}: {file.filename} skipped: the index gives no sha256")
                continue
            out.append(Candidate(file, dist))
        return out

    def _installable(self, project: str, target: Target, allow_yanked: bool) -> dict[Version, list[Candidate]]:
        """Versions with at least one file `target` can install, with those files (computed once)."""
        key = (project, target, allow_yanked)
        if key not in self._installable_cache:
            self._installable_cache[key] = self._compute_installable(project, target, allow_yanked)
        return self._installable_cache[key]

    def _compute_installable(self, project: str, target: Target, allow_yanked: bool) -> dict[Version, list[Candidate]]:
        by_version: dict[Version, list[Candidate]] = defaultdict(list)
        for candidate in self._candidates.get(project, []):
            if _is_yanked(candidate) and not allow_yanked:
                continue
            if not target.accepts_python(candidate.file.requires_python):
                continue
            if candidate.dist.packagetype == WHEEL and target.wheel_rank(candidate.dist.tags) is None:
                continue
            by_version[candidate.dist.version].append(candidate)
        return by_version

    def _choose(self, demands: set[Demand]) -> dict[tuple[str, Version], Chosen]:
        grouped: dict[tuple[str, Target], list[Demand]] = defaultdict(list)
        for demand in demands:
            grouped[(demand.project, demand.target)].append(demand)
        chosen: dict[tuple[str, Version], Chosen] = {}
        for (project, target), group in sorted(grouped.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            pinned = any(d.pinned for d in group)
            installable = self._installable(project, target, allow_yanked=pinned)
            for version in self._versions_for(project, target, group, installable):
                key = (project, version)
                release = chosen.setdefault(key, Chosen(project, self._display_name(project, version), version))
                release.targets.add(target)
                for candidate in self._files_for(target, installable[version]):
                    release.files[candidate.file.filename] = candidate.file
        return chosen

    @staticmethod
    def _files_for(target: Target, candidates: list[Candidate]) -> list[Candidate]:
        """The wheel pip on `target` would take (ties kept), plus any sdist.

        Other compatible wheels (an older manylinux build beside a newer one)
        would never be installed there, so they are not mirrored.
        """
        wheels = [c for c in candidates if c.dist.packagetype == WHEEL]
        ranked = [(target.wheel_rank(c.dist.tags), c) for c in wheels]
        best = min((rank for rank, _ in ranked if rank is not None), default=None)
        return [c for rank, c in ranked if rank == best] + [c for c in candidates if c.dist.packagetype == SDIST]

    def _versions_for(self, project: str, target: Target, group: list[Demand],
                      installable: dict[Version, list[Candidate]]) -> set[Version]:
        versions = sorted(installable, reverse=True)
        picked: set[Version] = set()
        for demand in group:
            matching = list(SpecifierSet(demand.specifier).filter(versions))
            if not demand.pinned:
                matching = [v for v in matching if not self._only_yanked(installable[v])]
            picked.update(matching[: self.latest] if demand.requested else matching[:1])
            page = self.pages.get(project)
            if not matching and not (page is not None and page.missing):  # a missing project fails its dependents
                self.warnings.append(
                    f"{project}: no version matching {demand.specifier or 'any'!r} installs on {target}"
                    + (f" (required by {self._required_by[project]})" if self._required_by.get(project) else "")
                )
        combined = SpecifierSet(",".join(d.specifier for d in group if d.specifier))
        picked.update(list(combined.filter(versions))[:1])
        return picked

    @staticmethod
    def _only_yanked(candidates: list[Candidate]) -> bool:
        return all(_is_yanked(c) for c in candidates)

    def _display_name(self, project: str, version: Version) -> str:
        for candidate in self._candidates.get(project, []):
            if candidate.dist.version == version:
                stem = candidate.file.filename.split("-", 1)[0]
                return stem.replace("_", "-") if normalize(stem) == project else project
        return project

    async def _ensure_metadata(self, releases: Iterable[Chosen]) -> None:
        todo = [r for r in releases if (r.project, r.version) not in self._metadata]
        await gather_all(self._read_one(r) for r in todo)

    def _metadata_file(self, release: Chosen) -> Candidate:
        """The file whose metadata stands for the release: a PEP 658 wheel, a wheel, else the sdist."""
        candidates = [c for c in self._candidates[release.project]
                      if c.dist.version == release.version and c.file.filename in release.files]

        def preference(c: Candidate) -> tuple[int, int, str]:
            return (c.dist.packagetype != WHEEL, c.file.core_metadata is False, c.file.filename)

        return min(candidates, key=preference)

    async def _read_one(self, release: Chosen) -> None:
        key = (release.project, release.version)
        candidate = self._metadata_file(release)
        what = f"{release.display_name} {release.version}"
        try:
            metadata = await self.read_metadata(release.project, what, candidate.file, candidate.dist)
        except IntegrityError as exc:
            self._failures[key] = exc.message
            self._metadata[key] = None
            return
        if metadata is None:
            self.warnings.append(
                f"{what}: only an sdist with dynamic dependencies; the closure below it could not be computed"
            )
        self._metadata[key] = metadata

    def _dependencies(self, releases: Iterable[Chosen], demands: set[Demand]) -> set[Demand]:
        extras_of: dict[tuple[str, Target], set[str]] = defaultdict(set)
        for demand in demands:
            extras_of[(demand.project, demand.target)].update(demand.extras)
        self._extras = extras_of
        found: set[Demand] = set()
        for release in releases:
            metadata = self._metadata.get((release.project, release.version))
            if metadata is None:
                continue
            for text in metadata.requires_dist:
                try:
                    req = Requirement(text)
                except InvalidRequirement:
                    self.warnings.append(f"{release.display_name} {release.version}: ignored invalid Requires-Dist {text!r}")
                    continue
                for target in release.targets:
                    extras = frozenset(extras_of[(release.project, target)])
                    for demand in self._demands_of(req, [target], extras, False):
                        self._required_by.setdefault(demand.project, f"{release.display_name} {release.version}")
                        found.add(demand)
        return found

    def _missing_dependencies(self, release: Chosen) -> str:
        """Why `release` cannot be installed: a dependency the index does not have ("" if none)."""
        if release.metadata is None:
            return ""
        missing = []
        for text in release.metadata.requires_dist:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            project = normalize(req.name)
            page = self.pages.get(project)
            if page is None or not page.missing:
                continue
            if any(self._demands_of(req, [t], frozenset(self._extras.get((release.project, t), ())), False)
                   for t in release.targets):
                missing.append(project)
        if not missing:
            return ""
        names = ", ".join(repr(p) for p in sorted(set(missing)))
        return f"requires {names}, not found upstream"

    def _check_requested(self, requirements: list[Requirement], chosen: dict[tuple[str, Version], Chosen]) -> None:
        have = {project for project, _ in chosen}
        for req in requirements:
            project = normalize(req.name)
            if not self._demands_of(req, self.targets, frozenset(), True):
                continue  # its marker excludes every target: nothing to mirror, nothing missing
            if project not in have:
                raise ReservoirError(
                    f"project {req.name!r}: no release matches {str(req.specifier) or 'any version'!r} "
                    f"for any target ({', '.join(map(str, self.targets))})",
                    hint="check the requirement, --python and --platform, or enable sdists",
                )
