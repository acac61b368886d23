"""The host's apt sources as an APT channel's defaults, and the channel's options."""

from __future__ import annotations

from pathlib import Path

import pytest

from downloader.apt.options import AptOptions, parse_options
from downloader.apt.sources import SuiteSource, read_sources, resolve_suites, trusted_keyrings
from reservoir.errors import ConfigError

KEY = """-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEZfake0BYJKwYBBAHaRw8BAQdA
=abcd
-----END PGP PUBLIC KEY BLOCK-----
"""


def etc_apt(tmp_path: Path) -> Path:
    etc = tmp_path / "etc-apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "main.sources").write_text(
        "Types: deb deb-src\n"
        "# a comment\n"
        "URIs: http://mirror.example.invalid/debian\n"
        "Suites: bookworm bookworm-updates\n"
        "Components: main contrib\n"
        "Signed-By: /usr/share/keyrings/example-archive.gpg\n"
        "\n"
        "Types: deb\n"
        "URIs: http://security.example.invalid/debian-security/\n"
        "Suites: bookworm-security\n"
        "Components: main\n"
        "Architectures: amd64 arm64\n"
        "Signed-By:\n" + "".join(f" {line}\n" if line else " .\n" for line in KEY.strip().split("\n")) +
        "\n"
        "Types: deb\n"
        "URIs: http://off.example.invalid/\n"
        "Suites: disabled\n"
        "Components: main\n"
        "Enabled: no\n")
    (etc / "sources.list").write_text(
        "# classic\n"
        "deb [arch=amd64 signed-by=/etc/apt/keyrings/tool.gpg] https://tool.example.invalid/apt tool-suite main extra\n"
        "deb-src http://mirror.example.invalid/debian bookworm main\n"
        "deb http://legacy.example.invalid/ubuntu jammy main universe\n")
    (etc / "sources.list.d" / "ignored.list.disabled").write_text("deb http://x.example.invalid/ x main\n")
    (etc / "trusted.gpg.d").mkdir()
    (etc / "trusted.gpg.d" / "legacy.gpg").write_bytes(b"\x99")
    return etc


def test_deb822_and_one_line_sources_are_read_with_their_keyrings(tmp_path: Path) -> None:
    sources = read_sources(etc_apt(tmp_path))
    assert [s.suites for s in sources] == [("tool-suite",), ("bookworm",), ("jammy",),
                                           ("bookworm", "bookworm-updates"), ("bookworm-security",)]
    tool, src, legacy, main, security = sources
    assert tool.signed_by == ("/etc/apt/keyrings/tool.gpg",) and tool.architectures == ("amd64",)
    assert tool.components == ("main", "extra") and src.types == ("deb-src",) and legacy.signed_by == ()
    assert main.types == ("deb", "deb-src") and main.components == ("main", "contrib")
    assert main.signed_by == ("/usr/share/keyrings/example-archive.gpg",)
    [inline] = security.signed_by
    assert inline == KEY  # the folded key, its ` .` lines empty again
    assert security.architectures == ("amd64", "arm64")


def test_each_suite_takes_the_uri_and_keyring_of_the_source_listing_it(tmp_path: Path) -> None:
    etc = etc_apt(tmp_path)
    sources = read_sources(etc)
    resolved = resolve_suites(["bookworm", "bookworm-security", "jammy"], sources, trusted=trusted_keyrings(etc))
    assert resolved[0] == SuiteSource("bookworm", "http://mirror.example.invalid/debian/",
                                      ("/usr/share/keyrings/example-archive.gpg",))
    assert resolved[1].uri == "http://security.example.invalid/debian-security/" and resolved[1].keyrings == (KEY,)
    assert resolved[2].keyrings == (str(etc / "trusted.gpg.d" / "legacy.gpg"),)  # no Signed-By: apt's trusted keys
    given = resolve_suites(["bookworm"], sources, "file:///srv/mirror", ["/keys/mine.asc"])
    assert given == (SuiteSource("bookworm", "file:///srv/mirror/", ("/keys/mine.asc",)),)
    with pytest.raises(ConfigError, match="no apt source of this host lists suite 'trixie'"):
        resolve_suites(["trixie"], sources)
    with pytest.raises(ConfigError, match="no keyring for suite 'bookworm'"):
        resolve_suites(["bookworm"], sources, "http://other.example.invalid/")
    with pytest.raises(ConfigError, match="disabled"):
        resolve_suites(["disabled"], sources)


def test_options_are_checked_and_round_trip_through_json() -> None:
    sources = [SuiteSource("bookworm", "http://mirror.example.invalid/debian/", ("/k.gpg",))]
    options = parse_options(["bookworm"], ["main"], "amd64", ["hello", "python3-yaml", "hello"], sources,
                            latest=2, recommends=True, without_base=True)
    assert options.packages == ("hello", "python3-yaml")
    assert AptOptions.from_json(options.to_json()) == options
    assert options.closure.latest == 2 and options.closure.recommends and options.closure.without_base
    assert options.source("bookworm") == sources[0]
    with pytest.raises(ConfigError, match="no upstream for suite 'sid'"):
        options.source("sid")


@pytest.mark.parametrize("change, message", [
    ({"suites": []}, "at least one --suite"),
    ({"suites": ["../etc"]}, "--suite '../etc' is not"),
    ({"suites": ["bookworm", "bookworm"]}, "--suite given twice"),
    ({"components": ["main/../x"]}, "--component 'main/../x' is not"),
    ({"arch": "AMD64"}, "--arch 'AMD64' is not"),
    ({"arch": "all"}, "--arch all is not"),
    ({"packages": ["Hello"]}, "--package 'Hello' is not"),
    ({"packages": []}, "at least one --package, or --all"),
    ({"latest": 0}, "--latest 0 must be at least 1"),
    ({"sources": [SuiteSource("bookworm", "ftp://x/", ("/k",))]}, "not an http(s):// or file:// URL"),
    ({"sources": [SuiteSource("bookworm", "http://x/", ())]}, "has no keyring"),
    ({"sources": [SuiteSource("sid", "http://x/", ("/k",))]}, "does not list"),
])
def test_bad_options_are_refused_in_one_line(change: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"suites": ["bookworm"], "components": ["main"], "arch": "amd64", "packages": ["hello"]}
    base.update(change)
    with pytest.raises(ConfigError) as caught:
        AptOptions(tuple(base["suites"]), tuple(base["components"]), str(base["arch"]),  # type: ignore[arg-type]
                   tuple(base["packages"]), latest=int(base.get("latest", 1)),  # type: ignore[arg-type,call-overload]
                   sources=tuple(base.get("sources", ())))  # type: ignore[arg-type]
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_all_needs_no_package() -> None:
    assert AptOptions(("bookworm",), all=True).closure.everything
