"""Upstream filenames: validate them (they are hostile input) and parse them."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from reservoir.errors import ReservoirError

WHEEL = "bdist_wheel"
SDIST = "sdist"


class UnsafeFilename(ReservoirError):
    pass


def check_safe_filename(project: str, filename: str) -> str:
    """Return `filename` if it can name a file in a flat folder, else raise.

    A name with a path separator, a `..` or a NUL could escape the folder
    the site publishes into, so the whole page is refused.
    """
    if not filename or "/" in filename or "\\" in filename or "\x00" in filename or ".." in filename:
        raise UnsafeFilename(
            f"project {project!r}: the index lists an unsafe filename {filename[:120]!r}",
            hint="the upstream index is malformed or hostile; fix it or choose another upstream",
        )
    return filename


@dataclass(frozen=True)
class Distribution:
    """What a wheel or sdist filename says about its file."""

    name: NormalizedName
    version: Version
    packagetype: str  # WHEEL or SDIST
    tags: frozenset[Tag]  # empty for sdists


def parse_distribution(filename: str) -> Distribution | None:
    """Parse a wheel or sdist filename; None for any other kind of file (eggs, exes...)."""
    if filename.endswith(".whl"):
        try:
            name, version, _build, tags = parse_wheel_filename(filename)
        except (InvalidWheelFilename, ValueError):
            return None
        return Distribution(name, version, WHEEL, tags)
    if filename.endswith((".tar.gz", ".zip")):
        try:
            name, version = parse_sdist_filename(filename)
        except (InvalidSdistFilename, ValueError):
            return None
        return Distribution(name, version, SDIST, frozenset())
    return None


def normalize(name: str) -> NormalizedName:
    return canonicalize_name(name)
