"""What a bundle may say about an APT release (the ``reservoir.ecosystems`` entry point ``apt``).

A name follows Debian policy 5.6.1, a version parses as Debian's
`[epoch:]upstream[-revision]` (policy 5.6.12), a file is that package's
`.deb` named as Debian names it (`name_version_arch.deb`, the epoch's colon
dropped, or escaped `%3a` as apt's own downloads write it), and the meta
keys the site's publisher reads have the types it expects. `pool_path` is
where the site puts a `.deb` in its own tree: Debian's layout, from the
source package's name, never the upstream's Filename.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from downloader.apt.packages import check_pool_path
from transferer.schema import Check, FieldError, boolean, one_of, optional, shown, text

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
ARCH_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_EPOCH_RE = re.compile(r"^[0-9]+$")
_UPSTREAM_CHARS_RE = re.compile(r"^[0-9][A-Za-z0-9.+~:-]*$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9.+~]+$")
_COMPONENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*(?:/[A-Za-z0-9][A-Za-z0-9._+~-]*)*$")
_SUITE_RE = _COMPONENT_RE
_TEXT = text(1 << 16, single_line=False)


@dataclass(frozen=True)
class DebianVersion:
    epoch: int
    upstream: str
    revision: str

    def __str__(self) -> str:
        out = f"{self.epoch}:" if self.epoch else ""
        return out + self.upstream + (f"-{self.revision}" if self.revision else "")

    @property
    def without_epoch(self) -> str:
        return self.upstream + (f"-{self.revision}" if self.revision else "")


def parse_version(version: str) -> DebianVersion:
    """Debian's split (dpkg's parseversion): epoch before the first colon, revision after the last hyphen."""
    if not isinstance(version, str) or not version or version != version.strip() or len(version) > 128:
        raise ValueError(f"not a Debian version: {shown(version)}")
    epoch_text, colon, rest = version.partition(":")
    if not colon:
        epoch_text, rest = "", version
    elif not _EPOCH_RE.match(epoch_text):
        raise ValueError(f"not a Debian version (epoch is not a number): {version[:80]!r}")
    upstream, hyphen, revision = rest.rpartition("-")
    if not hyphen:
        upstream, revision = rest, ""
    elif not revision:
        raise ValueError(f"not a Debian version (empty revision): {version[:80]!r}")
    if not _UPSTREAM_CHARS_RE.match(upstream):
        raise ValueError(f"not a Debian version (upstream part must start with a digit and use only "
                         f"A-Za-z0-9.+~-:): {version[:80]!r}")
    if ":" in upstream and not colon:
        raise ValueError(f"not a Debian version (a colon needs an epoch): {version[:80]!r}")
    if revision and not _REVISION_RE.match(revision):
        raise ValueError(f"not a Debian version (revision uses only A-Za-z0-9.+~): {version[:80]!r}")
    return DebianVersion(int(epoch_text) if epoch_text else 0, upstream, revision)


def deb_filename(name: str, version: str, arch: str) -> str:
    """Debian's name for a package's file: the epoch dropped (`hello_2.10-3_amd64.deb`)."""
    return f"{name}_{parse_version(version).without_epoch}_{arch}.deb"


def pool_path(component: str, source: str, filename: str) -> str:
    """`pool/<component>/<prefix>/<source>/<file>`: prefix `libX` for lib* sources, else the first letter."""
    if not NAME_RE.match(source):
        raise ValueError(f"not a Debian source package name: {shown(source)}")
    if not _COMPONENT_RE.match(component) or ".." in component.split("/"):
        raise ValueError(f"not a component: {shown(component)}")
    prefix = source[:4] if source.startswith("lib") and len(source) > 3 else source[0]
    return check_pool_path(f"pool/{component}/{prefix}/{source}/{filename}")


def _pattern(regex: re.Pattern[str], what: str, limit: int = 255) -> Check:
    base = text(limit, empty=False)

    def check(value: object, path: str) -> str:
        base(value, path)
        assert isinstance(value, str)
        if not regex.match(value) or ".." in value.split("/"):
            raise FieldError(path, f"not {what}: {shown(value)}")
        return value

    return check


def _pool(value: object, path: str) -> str:
    text(1024, empty=False)(value, path)
    assert isinstance(value, str)
    try:
        return check_pool_path(value)
    except ValueError as exc:
        raise FieldError(path, str(exc)) from None


def _name(value: object, path: str) -> str:
    text(255, empty=False)(value, path)
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise FieldError(path, f"not a Debian package name: {shown(value)}")
    return value


@dataclass(frozen=True)
class AptSchema:
    kind: str = "apt"
    release_meta: Mapping[str, Check] = field(default_factory=lambda: {
        "architecture": _pattern(ARCH_RE, "an architecture", 64),
        "control": text(1 << 20, single_line=False),  # the upstream's stanza, served back by the site
        "suite": _pattern(_SUITE_RE, "a suite", 128),
        "component": _pattern(_COMPONENT_RE, "a component", 128),
        "source": optional(_name),
        "section": optional(text(255)),
        "priority": optional(text(64)),
        "essential": boolean(),
        "multi_arch": optional(one_of("no", "same", "foreign", "allowed")),
        "depends": optional(_TEXT),
        "pre_depends": optional(_TEXT),
        "recommends": optional(_TEXT),
        "provides": optional(_TEXT),
        # The upstream suite's Release Origin and Label, which the site's Release repeats: one line each.
        "origin": optional(text(128)),
        "label": optional(text(128)),
    })
    artifact_meta: Mapping[str, Check] = field(default_factory=lambda: {
        "architecture": _pattern(ARCH_RE, "an architecture", 64),
        "upstream_path": _pool,  # the upstream's Filename, informational
    })

    def check_name(self, name: str) -> None:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ValueError(f"not a Debian package name: {shown(name)}")

    def check_version(self, version: str) -> None:
        parse_version(version)

    def check_filename(self, filename: str, name: str, version: str) -> None:
        if not isinstance(filename, str) or not filename.endswith(".deb") or filename.count("_") != 2:
            raise ValueError(f"not a .deb file name (name_version_arch.deb): {shown(filename)}")
        file_name, file_version, arch_deb = filename.split("_")
        arch = arch_deb[: -len(".deb")]
        parsed = parse_version(version)
        allowed = {parsed.without_epoch}
        if parsed.epoch:
            allowed.add(f"{parsed.epoch}%3a{parsed.without_epoch}")
        if file_name != name or file_version not in allowed or not ARCH_RE.match(arch):
            raise ValueError(f"{filename[:80]!r} is not a .deb of {name} {version}")


SCHEMA = AptSchema()
