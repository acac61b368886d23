"""The PyPI ecosystem as the hub sees it (`downloader.base.Ecosystem`, entry point `reservoir.adapters: pypi`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from downloader.base import ChannelSetup, ChannelSpec, FetchPolicy, OptionSpec, Selection, StoreOutcome, UpstreamFile
from downloader.fetch import Fetcher, FetchingSync
from downloader.pypi.adapter import Caches, PyPIAdapter
from downloader.pypi.index import JSON_TYPE
from downloader.pypi.options import PyPIOptions, read_requirements_file
from downloader.pypi.targets import host_platform, host_python
from reservoir.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from downloader.base import AdapterState
    from reservoir.blobs import BlobStore


# PyPI's page serial header, and a file:// index folder's pages: PEP 691 JSON
# beside the HTML wins, as content negotiation would.
SERIAL_HEADER = "X-PyPI-Last-Serial"
FOLDER_PAGES = (("index.json", JSON_TYPE), ("index.html", "text/html"))


def pypi_fetcher(policy: FetchPolicy) -> Fetcher:
    """The shared transport, told where PyPI keeps its serials and its folder pages."""
    return Fetcher(policy, serial_header=SERIAL_HEADER, folder_pages=FOLDER_PAGES)


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


@dataclass
class PyPISync(FetchingSync):
    """One sync of a PyPI channel: one connection pool, the adapter over it."""

    channel: ChannelSpec
    blobs: BlobStore
    caches: Caches
    policy: FetchPolicy
    _adapter: PyPIAdapter | None = field(default=None, init=False)

    def make_fetcher(self) -> Fetcher:
        return pypi_fetcher(self.policy)

    async def select(self, on_progress: Callable[[], None]) -> Selection:
        options = PyPIOptions.from_json(dict(self.channel.options))
        self._adapter = PyPIAdapter(self.channel.upstream, options, self.blobs, self.caches, self.fetcher,
                                    on_page=on_progress)
        selection = await self._adapter.select()
        root = self.caches.root
        selection.cursor = str(root.serial) if root is not None and root.serial is not None else None
        return selection

    async def store(self, files: list[UpstreamFile], on_done: Callable[[int], None]) -> list[StoreOutcome]:
        assert self._adapter is not None, "select before store"
        return await self._adapter.store(files, on_done)


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

        return load_caches(session, channel.id)

    def save_caches(self, session: Session, channel: ChannelSpec, caches: Any, state: AdapterState) -> None:
        from downloader.pypi.cache import save_caches

        save_caches(session, channel.id, caches)

    def open(self, channel: ChannelSpec, blobs: BlobStore, caches: Any, policy: FetchPolicy,
             scratch: Path) -> PyPISync:
        return PyPISync(channel, blobs, caches, policy)

    def license_files(self, filename: str, stream: BinaryIO) -> list[Any]:
        from licenses.files import license_files

        return license_files(filename, stream)

    def declaration(self, meta: Mapping[str, Any], files: list[Any]) -> Any | None:
        from licenses.verdict import declaration

        return declaration(dict(meta), files)


ECOSYSTEM = PyPIEcosystem()
