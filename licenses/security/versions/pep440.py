"""PEP 440 order (packaging); a version packaging cannot read sorts before every valid one."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version


def compare(a: str, b: str) -> int:
    try:
        va, vb = Version(a), Version(b)
    except InvalidVersion:
        return (a > b) - (a < b)
    return (va > vb) - (va < vb)
