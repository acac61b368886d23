"""Dependency fields (Depends, Pre-Depends, Recommends, Provides) and Debian version constraints.

`a (>= 1.0) | b:any, c [amd64] <stage1>` is a list of groups, each a list
of alternatives. Architecture restrictions (`[amd64 !i386]`) and build
profiles (`<stage1>`) belong to source packages; a binary index rarely
carries them, and they are parsed and judged, never a reason to refuse.
Version order is Debian's (python-debian, as in licenses/security/versions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cmp_to_key, lru_cache

from licenses.security.versions.debian import compare as _compare

OPERATORS = ("<<", "<=", "=", ">=", ">>")
# dpkg still reads the obsolete `<` and `>` as `<=` and `>=`.
_OBSOLETE = {"<": "<=", ">": ">="}

_RELATION_RE = re.compile(
    r"""^\s*
    (?P<name>[a-z0-9][a-z0-9+.-]*)
    (?::(?P<arch>[a-z0-9-]+))?
    \s*(?:\(\s*(?P<op><<|<=|>=|>>|=|<|>)\s*(?P<version>[A-Za-z0-9][A-Za-z0-9.+~:-]*)\s*\))?
    \s*(?:\[(?P<archs>[^]]*)\])?
    \s*(?P<profiles>(?:<[^>]*>\s*)*)
    $""",
    re.VERBOSE,
)


class RelationError(ValueError):
    """A dependency field that does not parse; the message quotes the part at fault."""


@dataclass(frozen=True, slots=True)
class Relation:
    name: str
    arch: str | None = None  # `:any`, `:native`, `:amd64`
    op: str | None = None
    version: str | None = None
    archs: tuple[str, ...] = ()  # `[amd64 !i386]`
    profiles: tuple[tuple[str, ...], ...] = ()  # `<stage1 !nocheck> <cross>`

    def __str__(self) -> str:
        text = self.name + (f":{self.arch}" if self.arch else "")
        if self.op:
            text += f" ({self.op} {self.version})"
        if self.archs:
            text += f" [{' '.join(self.archs)}]"
        return text

    def applies_on(self, arch: str) -> bool:
        """Whether an architecture restriction keeps this relation on `arch` (no restriction: it does)."""
        if not self.archs:
            return True
        negated = [a[1:] for a in self.archs if a.startswith("!")]
        if negated:
            return arch not in negated
        return arch in self.archs


Group = tuple[Relation, ...]  # alternatives, `a | b`


def group_text(group: Group) -> str:
    return " | ".join(str(r) for r in group)


@lru_cache(maxsize=1 << 16)
def parse_relation(text: str) -> Relation:
    match = _RELATION_RE.match(text)
    if match is None:
        raise RelationError(f"not a dependency: {text.strip()[:80]!r}")
    op = match["op"]
    version = match["version"]
    if op is not None:
        op = _OBSOLETE.get(op, op)
    archs = tuple(match["archs"].split()) if match["archs"] is not None else ()
    if match["archs"] is not None and not archs:
        raise RelationError(f"empty architecture list in {text.strip()[:80]!r}")
    profiles = tuple(tuple(p.split()) for p in re.findall(r"<([^>]*)>", match["profiles"] or ""))
    return Relation(match["name"], match["arch"], op, version, archs, profiles)


@lru_cache(maxsize=1 << 16)
def parse_relations(text: str) -> tuple[Group, ...]:
    """A whole field, e.g. a Depends value; empty text is no relation."""
    groups: list[Group] = []
    for part in text.split(","):
        if not part.strip():
            if text.strip():
                raise RelationError(f"empty dependency in {text.strip()[:80]!r}")
            continue
        groups.append(tuple(parse_relation(alt) for alt in part.split("|")))
    return tuple(groups)


def parse_provides(text: str) -> tuple[Relation, ...]:
    """A Provides field: names, each maybe with `(= VERSION)` (the only operator Provides allows)."""
    provided = []
    for group in parse_relations(text):
        if len(group) != 1:
            raise RelationError(f"alternatives in Provides: {text.strip()[:80]!r}")
        relation = group[0]
        if relation.op not in (None, "="):
            raise RelationError(f"Provides allows only '=': {str(relation)!r}")
        provided.append(relation)
    return tuple(provided)


_PROVIDES_ITEM = r"\s*([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*=\s*([A-Za-z0-9][A-Za-z0-9.+~:-]*)\s*\))?\s*"
_PROVIDES_RE = re.compile(rf"{_PROVIDES_ITEM}(?:,{_PROVIDES_ITEM})*")
_PROVIDES_ITEM_RE = re.compile(_PROVIDES_ITEM + "(?:,|$)")


def provided_names(text: str) -> list[tuple[str, str]]:
    """[(name, version or "")] of a Provides field, fast (an index has tens of thousands).

    Raises RelationError where `parse_provides` would.
    """
    if not _PROVIDES_RE.fullmatch(text):
        parse_provides(text)  # names the fault
        raise RelationError(f"not a Provides field: {text.strip()[:80]!r}")
    return _PROVIDES_ITEM_RE.findall(text)


@lru_cache(maxsize=1 << 18)
def compare(a: str, b: str) -> int:
    """Debian order: negative, zero or positive."""
    return _compare(a, b)


version_key = cmp_to_key(compare)


def satisfies(version: str, op: str | None, wanted: str | None) -> bool:
    """Whether `version` meets `op wanted` (no operator: any version does)."""
    if op is None or wanted is None:
        return True
    c = compare(version, wanted)
    if op == ">=":
        return c >= 0
    if op == "<=":
        return c <= 0
    if op == "=":
        return c == 0
    if op == ">>":
        return c > 0
    if op == "<<":
        return c < 0
    raise RelationError(f"unknown operator {op!r}")
