"""The APT ecosystem as the hub sees it (`downloader.base.Ecosystem`, entry point `reservoir.adapters: apt`).

A channel's suites, keyrings and closure options come from `channel add`
(or the host's apt sources); a sync runs `AptAdapter` over one connection
pool, then fetches each new `.deb` checked against its stanza's SHA256 and
size. What a sync verified (each suite's InRelease and index blobs) is kept
in the hub's per-channel state under `suites`, so an unchanged InRelease
(a 304) costs one request and no index.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from downloader.apt.options import parse_options
from downloader.apt.release import is_armored
from downloader.apt.sources import read_sources, resolve_suites, trusted_keyrings
from downloader.base import (
    ChannelSetup,
    ChannelSpec,
    FetchPolicy,
    OptionSpec,
)
from reservoir.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from downloader.apt.adapter import AptCaches
    from downloader.apt.sync import AptSync
    from downloader.base import AdapterState
    from reservoir.blobs import BlobStore

STATE_KEY = "suites"
# What Python calls a machine, as Debian names its architecture (when dpkg is not there to ask).
_MACHINE_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "ppc64le": "ppc64el", "s390x": "s390x",
                 "i686": "i386", "riscv64": "riscv64"}


def host_arch() -> str:
    """The host's Debian architecture: dpkg's, else the machine's."""
    try:
        done = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, timeout=30,
                              check=False)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return _MACHINE_ARCH.get(platform.machine(), "amd64")


def _keyring_paths(keyrings: tuple[str, ...]) -> tuple[str, ...]:
    """Keyring files as absolute paths (a sync may run from elsewhere), each readable now."""
    out = []
    for keyring in keyrings:
        if is_armored(keyring):
            out.append(keyring)
            continue
        path = Path(keyring).expanduser().absolute()
        if not path.is_file():
            raise ConfigError(f"--keyring {keyring!r} is not a file", hint="give the archive's public key (.gpg or .asc)")
        out.append(str(path))
    return tuple(out)


def _latest(values: Mapping[str, Any]) -> int:
    latest = values.get("latest")
    return 1 if latest is None else int(latest)


@dataclass(frozen=True)
class AptEcosystem:
    kind: str = "apt"
    progress_unit: str = "suite"

    def cli_options(self) -> list[OptionSpec]:
        return [
            OptionSpec(("--package",), "packages", "apt: a Debian package name (repeatable)", multiple=True),
            OptionSpec(("--suite",), "suites", "apt: a suite or codename (repeatable: one closure across them all).",
                       multiple=True),
            OptionSpec(("--component",), "components", "apt: an archive component (repeatable; default: main).",
                       multiple=True),
            OptionSpec(("--arch",), "arch", "apt: the machines' Debian architecture (default: the host's)."),
            OptionSpec(("--keyring",), "keyrings",
                       "apt: the archive's public key (repeatable; default: the host apt source's Signed-By).",
                       multiple=True),
            OptionSpec(("--all",), "all", "apt: every package of the suites, not a closure.", is_flag=True,
                       default=False),
            OptionSpec(("--latest",), "latest", "Versions of each requested package.", default=1, type=int,
                       show_default=True),
            OptionSpec(("--recommends",), "recommends", "apt: follow Recommends too.", is_flag=True, default=False),
            OptionSpec(("--without-base",), "without_base",
                       "apt: leave out what a base system has (Essential: yes, Priority: required).", is_flag=True,
                       default=False),
            OptionSpec(("--allow-expired",), "allow_expired", "apt: accept a Release past its Valid-Until.",
                       is_flag=True, default=False),
            # Read by the site's publisher (restorer/publish/apt.py); they travel in the channel's options.
            OptionSpec(("--keep",), "keep", "apt: versions of each package the site serves (0: all it holds).",
                       default=0, type=int, show_default=True),
            OptionSpec(("--hold-uninstallable",), "hold_uninstallable",
                       "apt: the site holds back a package its published set cannot satisfy (default: reported only).",
                       is_flag=True, default=False),
        ]

    def default_upstream(self) -> str:
        for source in read_sources():
            if "deb" in source.types and source.uris:
                return source.uris[0].rstrip("/") + "/"
        raise ConfigError("this host has no apt source to default to", hint="pass --upstream URL and --keyring FILE")

    def configure(self, values: Mapping[str, Any]) -> ChannelSetup:
        suites = tuple(values.get("suites") or ())
        if not suites:
            raise ConfigError("an apt channel needs at least one --suite", hint="e.g. --suite bookworm")
        upstream = values.get("upstream") or None
        keyrings = _keyring_paths(tuple(values.get("keyrings") or ()))
        host = [] if upstream and keyrings else read_sources()
        trusted = () if keyrings else trusted_keyrings()
        sources = resolve_suites(suites, host, upstream, keyrings, trusted)
        options = parse_options(
            suites, tuple(values.get("components") or ()), values.get("arch") or host_arch(),
            tuple(values.get("packages") or ()), sources, everything=bool(values.get("all")),
            latest=_latest(values), recommends=bool(values.get("recommends")),
            without_base=bool(values.get("without_base")), allow_expired=bool(values.get("allow_expired")))
        wanted = "every package" if options.all else f"{len(options.packages)} package(s)"
        summary = (f"{wanted} from {', '.join(options.suites)} {' '.join(options.components)} on {options.arch}; "
                   f"signed by {', '.join(sorted({k if not is_armored(k) else 'an inline key' for s in sources for k in s.keyrings}))}")
        keep = int(values.get("keep") or 0)
        if keep < 0:
            raise ConfigError(f"--keep {keep} must be 0 (all) or more")
        site = {"keep": keep, "hold_uninstallable": bool(values.get("hold_uninstallable"))}
        return ChannelSetup(sources[0].uri, {**options.to_json(), **site}, summary)

    def describe(self, upstream: str, options: Mapping[str, Any]) -> list[str]:
        everything = " (every package)" if options.get("all") else ""
        lines = [f"packages: {' '.join(options.get('packages', []))}{everything}",
                 f"suites: {', '.join(options.get('suites', []))}; components {' '.join(options.get('components', []))}"
                 f"; arch {options.get('arch', '')}; latest {options.get('latest', 1)}"
                 f"; recommends {'on' if options.get('recommends') else 'off'}"
                 f"; base {'left out' if options.get('without_base') else 'included'}"]
        others = sorted({s["uri"] for s in options.get("sources", []) if s.get("uri") != upstream})
        if others:
            lines.append(f"also from: {' '.join(others)}")
        return lines

    def load_caches(self, session: Session, channel: ChannelSpec, state: AdapterState) -> AptCaches:
        from downloader.apt.adapter import AptCaches

        caches = AptCaches.from_json(state.get(STATE_KEY) or {})
        caches.fetched = state.fetched.pop(STATE_KEY, {})
        return caches

    def save_caches(self, session: Session, channel: ChannelSpec, caches: Any, state: AdapterState) -> None:
        if caches.changed:
            state.put(STATE_KEY, caches.to_json())

    async def upstream_cursor(self, channel: ChannelSpec, state: AdapterState, policy: FetchPolicy,
                              scratch: Path) -> str | None:
        """The digest of every suite's InRelease, from one conditional request each (`downloader.base.CursorProbe`)."""
        from downloader.apt.sync import inrelease_cursor

        return await inrelease_cursor(channel, state, STATE_KEY, policy)

    def open(self, channel: ChannelSpec, blobs: BlobStore, caches: Any, policy: FetchPolicy,
             scratch: Path) -> AptSync:
        from downloader.apt.sync import AptSync

        return AptSync(channel, blobs, caches, policy, scratch)

    def license_files(self, filename: str, stream: BinaryIO) -> list[Any]:
        from downloader.apt.control import license_files

        return list(license_files(filename, stream))

    def declaration(self, meta: Mapping[str, Any], files: list[Any]) -> Any | None:
        """The DEP-5 copyright file's licenses (None when it is free-form: scancode reads it then)."""
        from licenses.declared import declared_debian_copyright

        for found in files:
            declared = declared_debian_copyright(found.text())
            if declared is not None:
                return declared
        return None


ECOSYSTEM = AptEcosystem()
