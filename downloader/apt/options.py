"""An APT channel's options (Channel.options, see docs/catalog.md), parsed and checked.

`sources` says where each suite comes from and which keyrings sign it; the
channel command fills it from `--upstream`/`--keyring` or the host's apt
sources (`sources.resolve_suites`), so a sync never reads the host's files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from downloader.apt.closure import ClosureOptions
from downloader.apt.packages import ARCH_RE, NAME_RE
from downloader.apt.sources import SuiteSource
from reservoir.errors import ConfigError

# Suites and components name folders under dists/: plain words, maybe with a slash (`bookworm/updates`).
DIST_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*(?:/[A-Za-z0-9][A-Za-z0-9._+~-]*)*$")
URI_RE = re.compile(r"^(https?|file)://\S+$")


@dataclass(frozen=True)
class AptOptions:
    suites: tuple[str, ...]
    components: tuple[str, ...] = ("main",)
    arch: str = "amd64"
    packages: tuple[str, ...] = ()
    all: bool = False
    latest: int = 1
    recommends: bool = False
    without_base: bool = False
    allow_expired: bool = False
    sources: tuple[SuiteSource, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.suites:
            raise ConfigError("an apt channel needs at least one --suite", hint="e.g. --suite bookworm")
        if len(set(self.suites)) != len(self.suites):
            raise ConfigError(f"--suite given twice: {', '.join(self.suites)}")
        for suite in self.suites:
            _check(suite, DIST_PART_RE, "--suite", "a suite or codename, e.g. bookworm")
        if not self.components:
            raise ConfigError("an apt channel needs at least one --component", hint="e.g. --component main")
        for component in self.components:
            _check(component, DIST_PART_RE, "--component", "a component, e.g. main")
        _check(self.arch, ARCH_RE, "--arch", "a Debian architecture, e.g. amd64")
        if self.arch == "all":
            raise ConfigError("--arch all is not an architecture a machine runs",
                              hint="name the machines' architecture, e.g. amd64; arch all packages come with it")
        for name in self.packages:
            _check(name, NAME_RE, "--package", "a Debian package name (lowercase, e.g. python3-yaml)")
        if not self.packages and not self.all:
            raise ConfigError("an apt channel needs at least one --package, or --all for whole suites")
        if self.latest < 1:
            raise ConfigError(f"--latest {self.latest} must be at least 1")
        for source in self.sources:
            if source.suite not in self.suites:
                raise ConfigError(f"source given for suite {source.suite!r}, which the channel does not list")
            if not URI_RE.match(source.uri):
                raise ConfigError(f"upstream {source.uri!r} is not an http(s):// or file:// URL")
            if not source.keyrings:
                raise ConfigError(f"suite {source.suite!r} has no keyring", hint="pass --keyring FILE")

    @property
    def closure(self) -> ClosureOptions:
        return ClosureOptions(self.packages, self.latest, self.all, self.recommends, self.without_base)

    def source(self, suite: str) -> SuiteSource:
        for source in self.sources:
            if source.suite == suite:
                return source
        raise ConfigError(f"the channel has no upstream for suite {suite!r}",
                          hint="re-add the channel with --upstream, or with the host's apt source listing it")

    def to_json(self) -> dict[str, Any]:
        return {
            "suites": list(self.suites),
            "components": list(self.components),
            "arch": self.arch,
            "packages": list(self.packages),
            "all": self.all,
            "latest": self.latest,
            "recommends": self.recommends,
            "without_base": self.without_base,
            "allow_expired": self.allow_expired,
            "sources": [{"suite": s.suite, "uri": s.uri, "keyrings": list(s.keyrings)} for s in self.sources],
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> AptOptions:
        return AptOptions(
            suites=tuple(data.get("suites", ())),
            components=tuple(data.get("components", ("main",))),
            arch=str(data.get("arch", "amd64")),
            packages=tuple(data.get("packages", ())),
            all=bool(data.get("all", False)),
            latest=int(data.get("latest", 1)),
            recommends=bool(data.get("recommends", False)),
            without_base=bool(data.get("without_base", False)),
            allow_expired=bool(data.get("allow_expired", False)),
            sources=tuple(SuiteSource(str(s["suite"]), str(s["uri"]), tuple(s.get("keyrings", ())))
                          for s in data.get("sources", ())),
        )


def _check(value: str, pattern: re.Pattern[str], option: str, what: str) -> None:
    if not isinstance(value, str) or not pattern.match(value) or ".." in value.split("/"):
        raise ConfigError(f"{option} {value!r} is not {what}")


def parse_options(suites: Sequence[str], components: Sequence[str], arch: str, packages: Sequence[str],
                  sources: Sequence[SuiteSource], *, everything: bool = False, latest: int = 1,
                  recommends: bool = False, without_base: bool = False, allow_expired: bool = False) -> AptOptions:
    """What `reservoir channel add --kind apt` gives, checked (duplicate packages dropped, order kept)."""
    return AptOptions(tuple(suites), tuple(components) or ("main",), arch, tuple(dict.fromkeys(packages)),
                      everything, latest, recommends, without_base, allow_expired, tuple(sources))
