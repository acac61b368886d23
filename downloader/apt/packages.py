"""A binary `Packages` index (hostile input) into compact records, fast.

An index of a whole archive holds some 63,000 stanzas; this parser splits the
text on blank lines, then each stanza on line breaks, and keeps only the
fields the closure and the publisher need, with the stanza's own text for the
site to serve back unchanged. Dependency fields stay text until the closure
asks for them (`relations.parse_relations` caches by text, and most
dependency strings repeat).

Refused, with one line naming the stanza: a line that is not a field, a
missing or malformed required field, and a `Filename:` that is not a
relative path under `pool/`.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from reservoir.errors import IntegrityError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
VERSION_RE = re.compile(r"^(?:[0-9]+:)?[0-9][A-Za-z0-9.+~:-]*$")
ARCH_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# A pool path: relative, made of plain components, under pool/.
POOL_PATH_RE = re.compile(r"^pool/(?:[A-Za-z0-9+_.~%:-]+/)*[A-Za-z0-9+_.~%:-]+$")
MULTI_ARCH = frozenset({"no", "same", "foreign", "allowed"})
# All of a record's checked fields at once, NUL-separated: one match per stanza instead of seven.
_RECORD_RE = re.compile(
    "\0".join(p.pattern[1:-1] for p in (NAME_RE, VERSION_RE, ARCH_RE, SHA256_RE, POOL_PATH_RE))
    + r"\0[0-9]+\0(?:no|same|foreign|allowed)\Z")


class IndexError_(IntegrityError):
    """A Packages index that breaks the format; nothing of it is used."""


class _Fields(NamedTuple):
    # In the order the fast reader's regular expression captures them, so that a record is made from a
    # match with no Python code per field.
    stanza: str  # the stanza as the upstream wrote it, with its final line break, bytes read as Latin-1
    name: str
    version: str
    arch: str
    multi_arch_field: str  # "" when absent
    depends: str
    pre_depends: str
    recommends: str
    provides: str
    essential_field: str
    priority: str
    filename: str  # pool path, relative to the archive root
    size_field: str
    sha256: str
    section: str
    source: str  # the source package ("" when it is the binary's own), maybe with "(version)"
    unread: str  # the reader's flag for a line that is no field: always "" in a record
    suite: str
    component: str


class PackageRecord(_Fields):
    """One stanza of an index: the fields the closure and the publisher read, typed views as properties.

    Built as `PackageRecord(name, version, arch, filename, size, sha256, multi_arch="no", depends="", ...,
    stanza="", suite="", component="")`; the reader makes its records straight from its matches.
    """

    __slots__ = ()

    def __new__(cls, name: str, version: str, arch: str, filename: str, size: int, sha256: str,
                multi_arch: str = "no", depends: str = "", pre_depends: str = "", recommends: str = "",
                provides: str = "", essential: bool = False, priority: str = "", section: str = "",
                source: str = "", stanza: str = "", suite: str = "", component: str = "") -> PackageRecord:
        return tuple.__new__(cls, (stanza, name, version, arch, "" if multi_arch == "no" else multi_arch, depends,
                                   pre_depends, recommends, provides, "yes" if essential else "", priority, filename,
                                   str(size), sha256, section, source, "", suite, component))

    @property
    def size(self) -> int:
        return int(self.size_field)

    @property
    def essential(self) -> bool:
        return self.essential_field == "yes"

    @property
    def multi_arch(self) -> str:
        return self.multi_arch_field or "no"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.name, self.version, self.arch)

    @property
    def source_name(self) -> str:
        """The source package, without the `(version)` a binNMU adds."""
        return self.source.split(" ", 1)[0] if self.source else self.name

    def control(self) -> str:
        """The stanza as text (UTF-8, as Debian writes it)."""
        return self.stanza.rstrip("\n").encode("latin-1").decode("utf-8", errors="replace")

    @property
    def basename(self) -> str:
        return self.filename.rsplit("/", 1)[-1]


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic collector off while tens of thousands of acyclic records are made.

    Each of its passes would walk every record made so far, for no garbage:
    a fifth of an index's parse time. Reference counting still frees memory.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _dot_part(path: str) -> bool:
    return any(part in (".", "..") for part in path.split("/"))


def check_pool_path(path: str) -> str:
    """`path` if it is a plain relative path under pool/; raises ValueError otherwise."""
    if not POOL_PATH_RE.match(path) or _dot_part(path):
        raise ValueError(f"Filename {path[:120]!r} is not a relative path under pool/")
    return path


def _fail(where: str, number: int, name: str, reason: str) -> IndexError_:
    who = f"stanza {number} ({name})" if name else f"stanza {number}"
    return IndexError_(f"{where}: {who}: {reason}", hint="the upstream index is malformed or hostile; nothing was used")


def parse_packages(data: bytes | str, where: str = "Packages", suite: str = "",
                   component: str = "") -> list[PackageRecord]:
    with paused_gc():
        return _parse_packages(data, where, suite, component)


def _parse_packages(data: bytes | str, where: str, suite: str, component: str) -> list[PackageRecord]:
    """Every stanza of an index; raises IndexError_ on the first bad one.

    The fast path reads each stanza with one match of one regular expression
    (C speed, linear: no input makes it backtrack), which captures the kept
    fields and flags any line that is no field. Any doubt (such a line, a
    field that fails its check, a kept field given twice) hands the whole
    text to the line by line parser, which names the stanza and the reason.
    """
    # Latin-1 keeps one byte per character whatever the maintainers' names hold (a str with one
    # character past U+00FF takes two or four bytes for every character), and every field we read is
    # ASCII; `PackageRecord.control` gives a stanza back as UTF-8 text.
    text = (data.encode("utf-8") if isinstance(data, str) else data).decode("latin-1")
    del data
    if "\r" in text:
        raise IndexError_(f"{where}: carriage returns in the index", hint="the index is not in Debian's format")
    # Blank lines before the first stanza are skipped by the search, those after by each match's tail.
    body = text if text.endswith("\n") else text + "\n"
    if body.lstrip("\n")[:1] in (" ", "\t") or "\n\n " in body or "\n\n\t" in body:
        return _parse_lines(text, where, suite, component)  # a stanza starting with a folded line
    matches = _STANZA_RE.findall(body)
    if not matches:
        return []
    columns = list(zip(*matches))
    if not _columns_ok(columns):
        return _parse_lines(text, where, suite, component)  # it names the stanza and the reason
    # A kept field given twice would have been read once, silently: let the line parser refuse it.
    for field in _ONCE:
        if body.count("\n" + field) + body.startswith(field) != len(matches):
            return _parse_lines(text, where, suite, component)
    tail = (suite, component)
    new = tuple.__new__
    return [new(PackageRecord, match + tail) for match in matches]


def _columns_ok(columns: list[tuple[str, ...]]) -> bool:
    """Every stanza's checked fields well-formed, checked a column at a time (one match per column)."""
    if any(columns[_UNREAD]):
        return False
    for index, pattern in _COLUMN_CHECKS:
        if not pattern.fullmatch("\n".join(columns[index])):
            return False
    for index in _FOLDABLE_COLUMNS:
        if "\n" in "".join(columns[index]):
            return False  # folded: the line parser joins its lines
    filenames = "\n".join(columns[_FILENAME])
    if "//" in filenames:
        return False
    return "/." not in filenames or not any(_dot_part(f) for f in columns[_FILENAME])


def _unfold(value: str) -> str:
    return " ".join(part.strip() for part in value.split("\n")) if "\n" in value else value


def _record(fields: dict[str, str], where: str, number: int, stanza: str, suite: str,
            component: str) -> PackageRecord:
    name = fields.get("Package", "")
    if not name:
        raise _fail(where, number, "", "missing Package")
    try:
        version = fields["Version"]
        arch = fields["Architecture"]
        sha256 = fields["SHA256"]
        filename = fields["Filename"]
        size = fields["Size"]
    except KeyError as missing:
        raise _fail(where, number, name, f"missing {missing.args[0]}") from None
    multi_arch = fields.get("Multi-Arch", "")
    if not _RECORD_RE.match(f"{name}\0{version}\0{arch}\0{sha256}\0{filename}\0{size}\0{multi_arch or 'no'}") \
            or ("/." in filename and _dot_part(filename)):
        _explain(where, number, name, version, arch, sha256, filename, size, multi_arch or "no")
    return tuple.__new__(PackageRecord, (
        stanza, name, version, arch, multi_arch, fields.get("Depends", ""), fields.get("Pre-Depends", ""),
        fields.get("Recommends", ""), fields.get("Provides", ""), fields.get("Essential", ""),
        fields.get("Priority", ""), filename, size, sha256, fields.get("Section", ""), fields.get("Source", ""), "",
        suite, component,
    ))


def _explain(where: str, number: int, name: str, version: str, arch: str, sha256: str, filename: str, size: str,
             multi_arch: str) -> None:
    """Raise the error naming the first field `_RECORD_RE` refused."""
    if not name:
        raise _fail(where, number, name, "missing Package")
    if not NAME_RE.match(name):
        raise _fail(where, number, "", f"not a Debian package name: {name[:80]!r}")
    if not VERSION_RE.match(version):
        raise _fail(where, number, name, f"not a Debian version: {version[:80]!r}")
    if not ARCH_RE.match(arch):
        raise _fail(where, number, name, f"not an architecture: {arch[:80]!r}")
    if not SHA256_RE.match(sha256):
        raise _fail(where, number, name, f"SHA256 is not a sha256 digest: {sha256[:80]!r}")
    if not POOL_PATH_RE.match(filename) or ("/." in filename and _dot_part(filename)):
        raise _fail(where, number, name, f"Filename {filename[:120]!r} is not a relative path under pool/")
    if not size.isdigit():
        raise _fail(where, number, name, f"Size is not a number: {size[:40]!r}")
    if multi_arch not in MULTI_ARCH:
        raise _fail(where, number, name, f"unknown Multi-Arch: {multi_arch[:40]!r}")
    raise _fail(where, number, name, "a required field is empty")


def _parse_lines(text: str, where: str, suite: str, component: str) -> list[PackageRecord]:
    records: list[PackageRecord] = []
    number = 0
    for stanza in text.split("\n\n"):
        if not stanza.strip():
            continue
        stanza = stanza.strip("\n")
        number += 1
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.split("\n"):
            if line[:1] in (" ", "\t"):
                if not key:
                    raise _fail(where, number, "", "continuation line before any field")
                if key in _UNFOLDABLE:
                    raise _fail(where, number, fields.get("Package", ""), f"field {key} is folded")
                if key in _FOLDED:
                    fields[key] += " " + line.strip()
                continue
            key, sep, value = line.partition(":")
            if not sep or not _FIELD_NAME_RE.match(key):
                raise _fail(where, number, fields.get("Package", ""), f"not a field: {line[:80]!r}")
            if key in fields:
                raise _fail(where, number, fields.get("Package", ""), f"field {key} given twice")
            fields[key] = value.strip()
        records.append(_record(fields, where, number, stanza + "\n", suite, component))
    return records


# Fields whose folded lines carry meaning for us (a Description's do not).
_FOLDED = frozenset({"Depends", "Pre-Depends", "Recommends", "Provides", "Source"})
_KEPT = ("Package", "Version", "Architecture", "Multi-Arch", "Depends", "Pre-Depends", "Recommends", "Provides",
         "Essential", "Priority", "Filename", "Size", "SHA256", "Section", "Source")
# One match per stanza, linear whatever the input: every non-empty line is a kept field (its value and folded
# lines captured), another field, a folded line, or (last group) a line that is none of these.
_STANZA_RE = re.compile(
    "((?:(?:" + "|".join(f"{k}:[ \\t]*([^\\n]*(?:\\n[ \\t][^\\n]*)*)" for k in _KEPT)
    + r"|[!-9;-~]+:[^\n]*|[ \t][^\n]*|([^\n]+))\n)+)\n*")
# Fields each stanza holds exactly once, counted (fast): identity and file, where the record and the stanza
# served back must agree (a second Size would fail the download's size check).
_ONCE = ("Package:", "Version:", "Filename:", "SHA256:")
_UNFOLDABLE = frozenset({"Package", "Version", "Architecture", "Multi-Arch", "Filename", "Size", "SHA256"})
_FIELD_NAME_RE = re.compile(r"^[!-9;-~]+$")

# Where each field is in a match (and so in a record): the stanza is group 1, the kept fields follow.
_COLUMN = {key: i + 1 for i, key in enumerate(_KEPT)}
_UNREAD = len(_KEPT) + 1
_FILENAME = _COLUMN["Filename"]
_FOLDABLE_COLUMNS = tuple(_COLUMN[k] for k in ("Depends", "Pre-Depends", "Recommends", "Provides", "Source"))


def _column_re(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """One value per line, each matching `pattern` (linear: no value can hold a line break)."""
    one = pattern.pattern[1:-1]
    return re.compile(f"(?:{one})(?:\n(?:{one}))*")


_COLUMN_CHECKS = (
    (_COLUMN["Package"], _column_re(NAME_RE)),
    (_COLUMN["Version"], _column_re(VERSION_RE)),
    (_COLUMN["Architecture"], _column_re(ARCH_RE)),
    # Flat, so that the column reads at C speed; `_columns_ok` refuses empty, `.` and `..` parts.
    (_COLUMN["Filename"], _column_re(re.compile(r"^pool/[A-Za-z0-9+_.~%:/-]*[A-Za-z0-9+_.~%:-]$"))),
    (_COLUMN["Size"], _column_re(re.compile(r"^[0-9]+$"))),
    (_COLUMN["SHA256"], _column_re(SHA256_RE)),
    (_COLUMN["Multi-Arch"], _column_re(re.compile(r"^(?:|no|same|foreign|allowed)$"))),
)
