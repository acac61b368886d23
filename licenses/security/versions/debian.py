"""Debian policy order (python-debian): epoch, upstream version with `~` sorting first, revision."""

from __future__ import annotations

from debian.debian_support import Version


def compare(a: str, b: str) -> int:
    va, vb = Version(a), Version(b)
    return (va > vb) - (va < vb)
