"""The host's apt sources: where an APT channel comes from when the operator names no upstream.

Read as apt reads them: deb822 `*.sources` files (several paragraphs, each
with Types, URIs, Suites, Components, Architectures, Signed-By, Enabled) and
one-line `*.list` files and `sources.list` (`deb [opt=val ...] URI suite
component...`). `Signed-By` is a keyring path (or several) or an armored key
written inline; sources without it are checked, as apt does, against the
keyrings in `trusted.gpg.d/` and `trusted.gpg`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reservoir.errors import ConfigError

ARMOR_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"


@dataclass(frozen=True)
class AptSource:
    types: tuple[str, ...]  # deb, deb-src
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    architectures: tuple[str, ...]
    signed_by: tuple[str, ...]  # keyring paths, or one armored key block
    origin: str  # the file it came from, for messages


@dataclass(frozen=True)
class SuiteSource:
    """Where one suite of a channel comes from, and the keyrings its Release must be signed by."""

    suite: str
    uri: str
    keyrings: tuple[str, ...]


def _paragraphs(text: str) -> list[dict[str, str]]:
    paragraphs: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    key = ""
    for line in text.split("\n"):
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                paragraphs.append(fields)
            fields, key = {}, ""
            continue
        if line[0] in " \t":
            if key:
                fields[key] += "\n" + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            fields[key] = value.strip()
    if fields:
        paragraphs.append(fields)
    return paragraphs


def _inline_key(value: str) -> str:
    """An armored key written in a deb822 field: folded lines, ` .` for its empty lines."""
    lines = [("" if line.strip() == "." else line.strip()) for line in value.split("\n")]
    return "\n".join(lines).strip() + "\n"


def _signed_by(value: str) -> tuple[str, ...]:
    if not value:
        return ()
    if ARMOR_BEGIN in value:
        return (_inline_key(value),)
    return tuple(v for v in re.split(r"[\s,]+", value) if v)


def parse_deb822(text: str, origin: str) -> list[AptSource]:
    sources = []
    for fields in _paragraphs(text):
        if fields.get("enabled", "yes").lower() == "no":
            continue
        sources.append(AptSource(
            types=tuple(fields.get("types", "").split()),
            uris=tuple(fields.get("uris", "").split()),
            suites=tuple(fields.get("suites", "").split()),
            components=tuple(fields.get("components", "").split()),
            architectures=tuple(fields.get("architectures", "").split()),
            signed_by=_signed_by(fields.get("signed-by", "")),
            origin=origin,
        ))
    return sources


_ONE_LINE_RE = re.compile(r"^(deb|deb-src)\s+(?:\[([^]]*)\]\s+)?(\S+)\s+(\S+)((?:\s+\S+)*)\s*$")


def parse_one_line(text: str, origin: str) -> list[AptSource]:
    sources = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = _ONE_LINE_RE.match(line)
        if match is None:
            continue  # apt refuses the file; we only look for defaults, so skip what we cannot read
        options: dict[str, str] = {}
        for option in (match[2] or "").split():
            name, _, value = option.partition("=")
            options[name.strip().lower()] = value.strip()
        sources.append(AptSource(
            types=(match[1],),
            uris=(match[3],),
            suites=(match[4],),
            components=tuple(match[5].split()),
            architectures=tuple(a for a in options.get("arch", "").split(",") if a),
            signed_by=_signed_by(options.get("signed-by", "")),
            origin=origin,
        ))
    return sources


def read_sources(etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every enabled source of the host, in apt's order: sources.list, then sources.list.d/ by name."""
    found: list[AptSource] = []
    files = [etc_apt / "sources.list"]
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read apt source: {exc}",
                              hint="fix the file, or pass --upstream and --keyring") from None
        found += parse_deb822(text, str(path)) if path.suffix == ".sources" else parse_one_line(text, str(path))
    return found


def trusted_keyrings(etc_apt: Path = Path("/etc/apt")) -> tuple[str, ...]:
    """What apt checks a source without Signed-By against."""
    found = [etc_apt / "trusted.gpg"] if (etc_apt / "trusted.gpg").is_file() else []
    folder = etc_apt / "trusted.gpg.d"
    if folder.is_dir():
        found += sorted(p for p in folder.iterdir() if p.suffix in (".gpg", ".asc") and p.is_file())
    return tuple(str(p) for p in found)


def resolve_suites(suites: Sequence[str], sources: Sequence[AptSource], upstream: str | None = None,
                   keyrings: Sequence[str] = (), trusted: Sequence[str] = ()) -> tuple[SuiteSource, ...]:
    """Each suite's URI and keyrings: `upstream`/`keyrings` when given, else the host source listing it."""
    resolved = []
    for suite in suites:
        source = next((s for s in sources if "deb" in s.types and suite in s.suites and s.uris), None)
        if upstream:
            uri = upstream
        elif source is not None:
            uri = source.uris[0]
        else:
            listed = sorted({s for src in sources if "deb" in src.types for s in src.suites})
            raise ConfigError(f"no apt source of this host lists suite {suite!r} (listed: {', '.join(listed) or 'none'})",
                              hint="pass --upstream URL and --keyring FILE")
        if keyrings:
            rings = tuple(keyrings)
        elif source is not None and source.signed_by and (
                not upstream or upstream.rstrip("/") in {u.rstrip("/") for u in source.uris}):
            rings = source.signed_by
        elif tuple(trusted):
            rings = tuple(trusted)
        else:
            raise ConfigError(f"no keyring for suite {suite!r}: its source has no Signed-By",
                              hint="pass --keyring FILE with the archive's public key")
        resolved.append(SuiteSource(suite, uri.rstrip("/") + "/", rings))
    return tuple(resolved)
