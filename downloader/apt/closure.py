"""Choose packages as apt would: the requested ones and everything they need, across several suites.

The suites of one channel (`bookworm`, `bookworm-updates`, `bookworm-security`)
form one universe for one architecture: for a name, the newest version of any
suite is the candidate, as apt's default pinning gives. A dependency group
`a | b` takes its first alternative that something satisfies; a name
satisfies through a real package first, else through packages that Provide
it (a versioned dependency only through a versioned Provides). Multi-Arch
follows dpkg's `deparchsatisfied`: `:any` needs `Multi-Arch: allowed`, an
explicit `:arch` must be the channel's, `Architecture: all` counts as native.

Essential packages are roots too, unless the target's base system is left
out (`without_base`: Essential or Priority required), then they count as
installed. A dependency nothing satisfies is a warning naming the chain,
never a silent drop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from downloader.apt.packages import PackageRecord, paused_gc
from downloader.apt.relations import Group, Relation, RelationError, parse_relations, provided_names, satisfies, \
    version_key

# apt prefers, among providers, the more important package.
PRIORITY_RANK = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}


@dataclass
class Universe:
    """Every candidate for one architecture, newest first per name; `where` names it in messages."""

    arch: str
    where: str
    by_name: dict[str, list[PackageRecord]] = field(default_factory=dict)
    _provides: dict[str, list[tuple[PackageRecord, str]]] | None = field(default=None, repr=False)

    @staticmethod
    def build(indexes: Iterable[Sequence[PackageRecord]], arch: str, where: str) -> Universe:
        """The records of `indexes` (in suite order: on a tie the first suite wins) for `arch`."""
        with paused_gc():
            return Universe._build(indexes, arch, where)

    @staticmethod
    def _build(indexes: Iterable[Sequence[PackageRecord]], arch: str, where: str) -> Universe:
        by_name: dict[str, list[PackageRecord]] = {}
        get = by_name.get
        for records in indexes:
            for record in records:
                if record.arch != arch and record.arch != "all":
                    continue
                found = get(record.name)
                if found is None:
                    by_name[record.name] = [record]
                elif not any(r.version == record.version and r.arch == record.arch for r in found):
                    found.append(record)
        for records in by_name.values():
            if len(records) > 1:
                # sort is stable: among equal versions the earlier suite stays first
                records.sort(key=lambda r: version_key(r.version), reverse=True)
        return Universe(arch, where, by_name)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_name.values())

    def records(self) -> Iterable[PackageRecord]:
        for records in self.by_name.values():
            yield from records

    @property
    def provides(self) -> dict[str, list[tuple[PackageRecord, str]]]:
        """{virtual name: [(provider, provided version or "")]}, built on first use."""
        if self._provides is None:
            with paused_gc():
                self._provides = self._provided()
        return self._provides

    def _provided(self) -> dict[str, list[tuple[PackageRecord, str]]]:
        provides: dict[str, list[tuple[PackageRecord, str]]] = {}
        for records in self.by_name.values():
            for record in records:
                if not record.provides:
                    continue
                try:
                    provided = provided_names(record.provides)
                except RelationError:
                    continue  # an unusable provider; what needs it warns when nothing else satisfies it
                for name, version in provided:
                    found = provides.get(name)
                    if found is None:
                        provides[name] = [(record, version)]
                    else:
                        found.append((record, version))
        return provides

    def arch_ok(self, relation: Relation, record: PackageRecord) -> bool:
        qualifier = relation.arch
        if qualifier is None or qualifier == "native":
            return True
        if qualifier == "any":
            return record.multi_arch == "allowed"
        return qualifier == self.arch

    def real(self, relation: Relation) -> list[PackageRecord]:
        """Versions of the package `relation` names that satisfy it, newest first."""
        return [r for r in self.by_name.get(relation.name, ())
                if satisfies(r.version, relation.op, relation.version) and self.arch_ok(relation, r)]

    def providers(self, relation: Relation) -> list[PackageRecord]:
        """Packages whose Provides satisfy `relation`; unversioned Provides never satisfy a versioned one."""
        found = []
        for record, provided in self.provides.get(relation.name, ()):
            if relation.op is not None and (not provided or not satisfies(provided, relation.op, relation.version)):
                continue
            if self.arch_ok(relation, record):
                found.append(record)
        return found

    def describe_missing(self, relation: Relation) -> str:
        have = self.by_name.get(relation.name)
        if have:
            return f"not satisfiable in {self.where} (has {', '.join(r.version for r in have[:3])})"
        if relation.name in self.provides:
            return f"not satisfiable in {self.where} (only provided without a matching version)"
        return f"not found in {self.where}"


@dataclass(frozen=True)
class ClosureOptions:
    packages: tuple[str, ...] = ()
    latest: int = 1
    everything: bool = False  # every package of the universe, all versions
    recommends: bool = False
    without_base: bool = False


@dataclass
class ClosureResult:
    chosen: list[PackageRecord]
    warnings: list[str]


def is_base(record: PackageRecord) -> bool:
    return record.essential or record.priority == "required"


def _provider_order(record: PackageRecord) -> tuple[int, int, str]:
    return (0 if record.essential else 1, PRIORITY_RANK.get(record.priority, 5), record.name)


@dataclass
class _Walk:
    universe: Universe
    options: ClosureOptions
    chosen: dict[tuple[str, str, str], PackageRecord] = field(default_factory=dict)
    # How each chosen record was reached: (parent key or None, the relation text).
    via: dict[tuple[str, str, str], tuple[tuple[str, str, str] | None, str]] = field(default_factory=dict)
    queue: deque[PackageRecord] = field(default_factory=deque)
    warnings: list[str] = field(default_factory=list)

    def chain(self, key: tuple[str, str, str] | None) -> list[str]:
        names: list[str] = []
        while key is not None:
            parent, text = self.via[key]
            names.append(text)
            key = parent
        return names[::-1]

    def warn(self, parent: PackageRecord | None, text: str, reason: str) -> None:
        chain = self.chain(parent.key) if parent is not None else []
        self.warnings.append(" -> ".join(part for part in (*chain, text, reason) if part))

    def take(self, record: PackageRecord, parent: PackageRecord | None, text: str) -> None:
        if record.key in self.chosen:
            return
        self.chosen[record.key] = record
        self.via[record.key] = (parent.key if parent is not None else None, text)
        self.queue.append(record)

    def installed(self, record: PackageRecord) -> bool:
        """Left out because the target's base system already has it."""
        return self.options.without_base and is_base(record)

    def pick(self, relation: Relation) -> PackageRecord | None:
        """The record apt would use for `relation`: one already chosen, else the newest real one, else a provider."""
        real = self.universe.real(relation)
        providers = self.universe.providers(relation)
        for record in (*real, *providers):
            if record.key in self.chosen or self.installed(record):
                return record
        if real:
            return real[0]
        if providers:
            return sorted(providers, key=_provider_order)[0]
        return None

    def resolve_group(self, parent: PackageRecord, group: Group, warn: bool) -> None:
        usable = [alt for alt in group if alt.applies_on(self.universe.arch)]
        if not usable:
            return
        for alt in usable:
            record = self.pick(alt)
            if record is not None:
                if not self.installed(record):
                    self.take(record, parent, " | ".join(str(a) for a in usable) if len(usable) > 1 else str(alt))
                return
        if warn:
            text = " | ".join(str(a) for a in usable)
            reasons = "; ".join(f"{a.name}: {self.universe.describe_missing(a)}" for a in usable) \
                if len(usable) > 1 else self.universe.describe_missing(usable[0])
            self.warn(parent, text, reasons)

    def fields(self, record: PackageRecord) -> Iterable[tuple[str, bool]]:
        yield record.pre_depends, True
        yield record.depends, True
        if self.options.recommends:
            yield record.recommends, False  # apt installs without a Recommends it cannot satisfy

    def run(self) -> None:
        while self.queue:
            record = self.queue.popleft()
            for text, warn in self.fields(record):
                if not text:
                    continue
                try:
                    groups = parse_relations(text)
                except RelationError as exc:
                    self.warn(record, "", f"unreadable dependency field: {exc}")
                    continue
                for group in groups:
                    self.resolve_group(record, group, warn)


def resolve(universe: Universe, options: ClosureOptions) -> ClosureResult:
    """The chosen records (by name, then version) and the warnings, in the order met."""
    if options.everything:
        everything = sorted(universe.records(), key=lambda r: r.name)
        return ClosureResult(everything, [])
    walk = _Walk(universe, options)
    for name in options.packages:
        versions = universe.by_name.get(name)
        if versions:
            for record in versions[: options.latest]:
                walk.take(record, None, name)
            continue
        provider = walk.pick(Relation(name))
        if provider is None:
            walk.warn(None, name, f"not found in {universe.where}")
        else:
            walk.take(provider, None, name)
    if not options.without_base:
        for records in universe.by_name.values():
            if records[0].essential:
                walk.take(records[0], None, records[0].name)
    walk.run()
    chosen = sorted(walk.chosen.values(), key=lambda r: (r.name, version_key(r.version)))
    return ClosureResult(chosen, list(dict.fromkeys(walk.warnings)))
