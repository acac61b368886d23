"""Each ecosystem's own version order, as a sort key or a comparison."""

from __future__ import annotations

from collections.abc import Callable

from licenses.security.versions import cran, debian, pep440, rpm

# compare(a, b) -> negative, zero or positive, like C's strcmp.
Compare = Callable[[str, str], int]

COMPARATORS: dict[str, Compare] = {
    "pypi": pep440.compare,
    "apt": debian.compare,
    "yum": rpm.compare,
    "cran": cran.compare,
}


def comparator(kind: str) -> Compare:
    return COMPARATORS[kind]
