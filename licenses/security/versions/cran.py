"""CRAN order: R's package_version, numeric components split on `.` and `-`."""

from __future__ import annotations

import re


def key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.split(r"[.-]", version.strip()) if part.isdigit())


def compare(a: str, b: str) -> int:
    ka, kb = key(a), key(b)
    return (ka > kb) - (ka < kb)
