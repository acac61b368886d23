"""What a bundle may say about a PyPI release (the ``reservoir.ecosystems`` entry point ``pypi``).

A name is PEP 503 normalized, a version parses under PEP 440, a file is a
wheel or an sdist of that very release (as the closure selected it, see
`closure.py`), and the meta keys the site's publisher and reports read
have the types docs/catalog.md gives them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from packaging.version import InvalidVersion, Version

from downloader.pypi.files import SDIST, WHEEL, parse_distribution
from transferer.schema import Check, boolean, either, list_of, one_of, optional, text

NORMALIZED_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_TEXT = text(1 << 16, single_line=False)


@dataclass(frozen=True)
class PypiSchema:
    kind: str = "pypi"
    release_meta: Mapping[str, Check] = field(default_factory=lambda: {
        "summary": optional(_TEXT),
        "requires_dist": list_of(text(4096), 10_000),
        "requires_python": optional(text(1024)),
        "license_expression": optional(_TEXT),
        "license": optional(text(1 << 20, single_line=False)),
        "classifiers": list_of(text(1024), 10_000),
    })
    artifact_meta: Mapping[str, Check] = field(default_factory=lambda: {
        "packagetype": one_of(WHEEL, SDIST),
        "requires_python": optional(text(1024)),
        "yanked": either(boolean(), text(1 << 16), what="false, true or a reason"),
        "upload_time": optional(text(64)),
    })

    def check_name(self, name: str) -> None:
        if not NORMALIZED_NAME_RE.match(name):
            raise ValueError(f"not a PEP 503 normalized name: {name[:80]!r}")

    def check_version(self, version: str) -> None:
        try:
            Version(version)
        except InvalidVersion:
            raise ValueError(f"not a PEP 440 version: {version[:80]!r}") from None
        if version != version.strip():
            raise ValueError(f"not a PEP 440 version: {version[:80]!r}")

    def check_filename(self, filename: str, name: str, version: str) -> None:
        dist = parse_distribution(filename)
        if dist is None:
            raise ValueError(f"not a wheel or sdist file name: {filename[:80]!r}")
        if dist.name != name or dist.version != Version(version):
            raise ValueError(f"{filename[:80]!r} is not a file of {name} {version}")


SCHEMA = PypiSchema()
