"""The PyPI ecosystem as the hub sees it (`downloader.base.Ecosystem`, entry point `reservoir.adapters: pypi`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from downloader.base import ChannelSetup, ChannelSpec, FetchPolicy, OptionSpec
from downloader.pypi.options import PyPIOptions, read_requirements_file
from downloader.pypi.targets import host_platform, host_python
from reservoir.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from downloader.pypi.adapter import Caches
    from downloader.pypi.sync import PyPISync

    from downloader.base import AdapterState
    from reservoir.blobs import BlobStore


def _pip_config_index_url() -> str | None:
    """global.index-url from the host's pip configuration files, if set."""
    try:
        result = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("global.index-url", ":env:.index-url"):
            return value.strip().strip("'\"")
    return None


def _pip_builtin_index_url() -> str | None:
    try:
        # pip's own default, read from pip so no registry host is written here.
        from pip._internal.models.index import PyPI

        return str(PyPI.simple_url)
    except Exception:  # noqa: BLE001 - any pip internals change means "unknown"
        return None


def host_pip_index_url() -> str:
    """The index the host's pip installs from: PIP_INDEX_URL, pip config, pip's default."""
    url = os.environ.get("PIP_INDEX_URL") or _pip_config_index_url() or _pip_builtin_index_url()
    if not url:
        raise ConfigError("cannot tell which index the host's pip uses", hint="pass --upstream URL")
    return url


def _latest(values: Mapping[str, Any]) -> int:
    latest = values.get("latest")
    return 1 if latest is None else int(latest)


@dataclass(frozen=True)
class PyPIEcosystem:
    kind: str = "pypi"
    progress_unit: str = "page"

    def cli_options(self) -> list[OptionSpec]:
        return [
            OptionSpec(("--package",), "packages", "pypi: a PEP 508 requirement (repeatable)", multiple=True),
            OptionSpec(("--requirements",), "requirements_file", "pypi: a file of PEP 508 requirements, one a line.",
                       type=click.Path(path_type=Path, dir_okay=False)),
            OptionSpec(("--python",), "pythons", "pypi: target Python X.Y (repeatable; default: this one's).",
                       multiple=True),
            OptionSpec(("--platform",), "platforms",
                       "pypi: target platform tag, e.g. manylinux_2_28_x86_64 (repeatable; default: the host's).",
                       multiple=True),
            OptionSpec(("--latest",), "latest", "Versions of each requested package.", default=1, type=int,
                       show_default=True),
            OptionSpec(("--sdists/--no-sdists",), "sdists", "pypi: mirror source distributions too.", default=False,
                       show_default=True),
        ]

    def default_upstream(self) -> str:
        return host_pip_index_url()

    def configure(self, values: Mapping[str, Any]) -> ChannelSetup:
        requirements_file = values.get("requirements_file")
        requested = list(values.get("packages") or ()) + (
            read_requirements_file(Path(requirements_file)) if requirements_file else [])
        options = PyPIOptions(
            packages=requested,
            pythons=list(values.get("pythons") or ()) or [host_python()],
            platforms=list(values.get("platforms") or ()) or [host_platform()],
            latest=_latest(values),
            sdists=bool(values.get("sdists")),
        )
        summary = (f"{len(requested)} requirement(s), python {', '.join(options.pythons)} "
                   f"on {', '.join(options.platforms)}")
        return ChannelSetup(values.get("upstream") or self.default_upstream(), options.to_json(), summary)

    def describe(self, upstream: str, options: Mapping[str, Any]) -> list[str]:
        return [
            f"packages: {' '.join(options.get('packages', []))}",
            f"targets: python {', '.join(options.get('pythons', []))} on {', '.join(options.get('platforms', []))}"
            f"; latest {options.get('latest', 1)}; sdists {'on' if options.get('sdists') else 'off'}",
        ]

    def load_caches(self, session: Session, channel: ChannelSpec, state: AdapterState) -> Caches:
        from downloader.pypi.cache import load_caches
        from downloader.pypi.sync import ROOT_STATE_KEY

        caches = load_caches(session, channel.id)
        caches.fetched_root = state.fetched.pop(ROOT_STATE_KEY, None)
        return caches

    def save_caches(self, session: Session, channel: ChannelSpec, caches: Any, state: AdapterState) -> None:
        from downloader.pypi.cache import save_caches
        from downloader.pypi.sync import ROOT_STATE_KEY, root_probe_state

        save_caches(session, channel.id, caches)
        state.put(ROOT_STATE_KEY, root_probe_state(caches))

    async def upstream_cursor(self, channel: ChannelSpec, state: AdapterState, policy: FetchPolicy,
                              scratch: Path) -> str | None:
        """The root index's serial, from one conditional request (`downloader.base.CursorProbe`)."""
        from downloader.pypi.sync import root_cursor

        return await root_cursor(channel.upstream, state, policy)

    def open(self, channel: ChannelSpec, blobs: BlobStore, caches: Any, policy: FetchPolicy,
             scratch: Path) -> PyPISync:
        from downloader.pypi.sync import PyPISync

        return PyPISync(channel, blobs, caches, policy)

    def license_files(self, filename: str, stream: BinaryIO) -> list[Any]:
        from licenses.files import license_files

        return license_files(filename, stream)

    def declaration(self, meta: Mapping[str, Any], files: list[Any]) -> Any | None:
        from licenses.verdict import declaration

        return declaration(dict(meta), files)


ECOSYSTEM = PyPIEcosystem()
