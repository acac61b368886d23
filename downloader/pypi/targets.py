"""Target environments: a Python version on a platform, and what it installs.

A channel stores one platform tag per platform (the most specific, e.g.
``manylinux_2_36_x86_64``); the tags a pip on that platform accepts are
derived from it, so the same channel can be checked for any Python version.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from functools import cached_property, lru_cache

from packaging import tags
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag

from reservoir.errors import ConfigError

MANYLINUX_RE = re.compile(r"^manylinux_(\d+)_(\d+)_(.+)$")
MUSLLINUX_RE = re.compile(r"^musllinux_(\d+)_(\d+)_(.+)$")
MACOS_RE = re.compile(r"^macosx_(\d+)_(\d+)_(.+)$")
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
PYTHON_RE = re.compile(r"^(\d)\.(\d{1,2})$")


def host_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def host_platform() -> str:
    """The host's most specific platform tag (e.g. manylinux_2_36_x86_64).

    packaging lists plain `linux_*` first on Linux, but that tag is for
    local builds only; the newest manylinux/musllinux tag implies it.
    """
    platforms = list(tags.platform_tags())
    specific = [p for p in platforms if p.startswith(("manylinux_", "musllinux_"))]
    return specific[0] if specific else platforms[0]


def check_python(value: str) -> str:
    if not PYTHON_RE.match(value):
        raise ConfigError(f"--python {value!r} is not a Python version", hint="use X.Y, e.g. 3.12")
    return value


def check_platform(value: str) -> str:
    if not re.match(r"^[a-z0-9_]+$", value) or value == "any":
        raise ConfigError(f"--platform {value!r} is not a platform tag", hint="e.g. manylinux_2_28_x86_64, win_amd64")
    return value


def expand_platform(platform: str) -> list[str]:
    """Every platform tag a pip on `platform` accepts, most specific first."""
    for legacy, (major, minor) in LEGACY_MANYLINUX.items():
        if platform.startswith(legacy + "_"):
            platform = f"manylinux_{major}_{minor}_{platform[len(legacy) + 1:]}"
    if m := MANYLINUX_RE.match(platform):
        major, minor, arch = int(m[1]), int(m[2]), m[3]
        expanded = [f"manylinux_{major}_{n}_{arch}" for n in range(minor, -1, -1)]
        expanded += [f"{legacy}_{arch}" for legacy, (lmaj, lmin) in LEGACY_MANYLINUX.items()
                     if (lmaj, lmin) <= (major, minor)]
        return expanded + [f"linux_{arch}"]
    if m := MUSLLINUX_RE.match(platform):
        major, minor, arch = int(m[1]), int(m[2]), m[3]
        return [f"musllinux_{major}_{n}_{arch}" for n in range(minor, -1, -1)] + [f"linux_{arch}"]
    if m := MACOS_RE.match(platform):
        return list(tags.mac_platforms((int(m[1]), int(m[2])), m[3]))
    return [platform]


def _platform_facts(platform: str) -> dict[str, str]:
    """The PEP 508 marker variables that follow from a platform tag."""
    if platform.startswith("win"):
        machine = {"win_amd64": "AMD64", "win32": "x86", "win_arm64": "ARM64"}.get(platform, platform)
        return {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "platform_machine": machine}
    if platform.startswith("macosx"):
        arch = platform.rsplit("_", 1)[-1]
        machine = {"universal2": "arm64", "intel": "x86_64"}.get(arch, arch)
        return {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix", "platform_machine": machine}
    arch = platform.split("_", 1)[1] if platform.startswith("linux_") else platform.rsplit("_", 1)[-1]
    for suffix in ("x86_64", "aarch64", "ppc64le", "s390x", "armv7l", "i686"):
        if platform.endswith(suffix):
            arch = suffix
    return {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "platform_machine": arch}


@dataclass(frozen=True)
class Target:
    """One environment the mirror must be able to install into."""

    python: str  # "X.Y"
    platform: str  # the most specific platform tag

    def __str__(self) -> str:
        return f"python {self.python} on {self.platform}"

    @property
    def python_tuple(self) -> tuple[int, int]:
        major, minor = self.python.split(".")
        return int(major), int(minor)

    @cached_property
    def tag_ranks(self) -> dict[Tag, int]:
        """The tags this target installs, each with pip's preference (0 is best)."""
        platforms = expand_platform(self.platform)
        version = self.python_tuple
        ordered = [
            *tags.cpython_tags(version, platforms=platforms),
            *tags.compatible_tags(version, f"cp{version[0]}{version[1]}", platforms=platforms),
        ]
        ranks: dict[Tag, int] = {}
        for rank, tag in enumerate(ordered):
            ranks.setdefault(tag, rank)
        return ranks

    @property
    def tags(self) -> frozenset[Tag]:
        return frozenset(self.tag_ranks)

    def wheel_rank(self, wheel_tags: frozenset[Tag]) -> int | None:
        """How much pip on this target prefers a wheel (lower is better); None: not installable."""
        ranks = [self.tag_ranks[t] for t in wheel_tags if t in self.tag_ranks]
        return min(ranks) if ranks else None

    @cached_property
    def marker_environment(self) -> dict[str, str]:
        full = f"{self.python}.0"
        if self.python == host_python():
            full = ".".join(map(str, sys.version_info[:3]))
        return {
            "implementation_name": "cpython",
            "implementation_version": full,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_version": "",
            "python_version": self.python,
            "python_full_version": full,
            **_platform_facts(self.platform),
        }

    def accepts_python(self, requires_python: str | None) -> bool:
        spec = parse_requires_python(requires_python) if requires_python else None
        return spec is None or spec.contains(self.marker_environment["python_full_version"], prereleases=True)


@lru_cache(maxsize=4096)
def parse_requires_python(text: str) -> SpecifierSet | None:
    """A file's requires-python; None when it is junk (old uploads have some; pip ignores it too).

    Cached: a big project repeats a handful of values over thousands of files.
    """
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        return None


def targets_of(pythons: list[str], platforms: list[str]) -> list[Target]:
    return [Target(python, platform) for python in pythons for platform in platforms]
