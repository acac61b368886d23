"""Site-side fixtures: a catalog filled directly from real wheels, and a running server."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from sqlalchemy import select
from sqlalchemy.orm import Session

from reservoir.blobs import BlobStore
from reservoir.models import Artifact, ArtifactState, Channel, Gate, Release
from tests.support.pypi_index import wheel_metadata


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wheel_named(wheels: dict[str, Path], prefix: str) -> Path:
    return next(path for name, path in wheels.items() if name.startswith(prefix))


def name_version(filename: str) -> tuple[str, str]:
    if filename.endswith(".whl"):
        name, version, _build, _tags = parse_wheel_filename(filename)
    else:
        name, version = parse_sdist_filename(filename)
    return str(name), str(version)


def add_file(
    session: Session,
    blobs: BlobStore,
    channel: Channel,
    path: Path,
    *,
    yanked: bool | str = False,
    requires_python: str | None = None,
    gate: Gate = Gate.ALLOWED,
) -> Release:
    """Put one real distribution file into the catalog and blob store, as an import would."""
    name, version = name_version(path.name)
    if path.name.endswith(".whl"):
        # The filename is normalized; the metadata keeps the project's own spelling.
        name = next(line[6:].strip() for line in wheel_metadata(path).decode().splitlines() if line.startswith("Name: "))
    normalized = canonicalize_name(name)
    release = session.scalars(
        select(Release).where(Release.channel_id == channel.id, Release.name == normalized, Release.version == version)
    ).one_or_none()
    if release is None:
        release = Release(channel=channel, name=normalized, display_name=name, version=version, gate=gate, meta={})
        session.add(release)
    sha = blobs.put_file(path)
    meta: dict[str, object] = {
        "packagetype": "bdist_wheel" if path.name.endswith(".whl") else "sdist",
        "requires_python": requires_python,
        "yanked": yanked,
        "upload_time": "2026-01-02T03:04:05Z",
    }
    if path.name.endswith(".whl"):
        meta["aux_blobs"] = {"metadata": blobs.put_bytes(wheel_metadata(path))}
    release.artifacts.append(
        Artifact(filename=path.name, sha256=sha, size=path.stat().st_size, state=ArtifactState.STORED, meta=meta)
    )
    session.flush()
    return release


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    access_log: Path

    def access_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []


@contextmanager
def run_server(home: Path, *extra: str, workers: int = 1) -> Iterator[RunningServer]:
    """`reservoir serve` as a user runs it, on a free 127.0.0.1 port; always stopped."""
    port = free_port()
    log = home / "logs" / f"access-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "reservoir", "--home", str(home), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--watch-interval", "0", "--access-log", str(log), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"reservoir serve exited: {process.stderr.read().decode() if process.stderr else ''}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield RunningServer(url=url, process=process, access_log=log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def run_nginx(binary: str, conf: Path, prefix: Path, port: int) -> Iterator[RunningServer]:
    """nginx in the foreground on `conf`, once 127.0.0.1:`port` answers /healthz; always stopped."""
    import urllib.error
    import urllib.request

    process = subprocess.Popen([binary, "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield RunningServer(url=url, process=process, access_log=prefix / "none")  # type: ignore[arg-type]
    finally:
        process.terminate()
        process.wait(timeout=10)
