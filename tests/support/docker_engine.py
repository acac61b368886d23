"""A real Docker engine for the session tests, and a minimal Python image made without any registry.

The engine runs with its own socket, exec root and pid file in a temporary folder, no bridge
and no iptables rules, so it touches nothing the machine already runs. Its data root lives
outside the checkout and is kept between runs (images stay imported).

The image is sessions.images' `debootstrap --variant=minbase` root with python3, pip and
venv, from the host's own apt sources, cached under ~/.cache/reservoir/images keyed by
those inputs (the same cache `reservoir session image build --debootstrap` and the demo use).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reservoir.errors import ReservoirError
from sessions.images import debootstrap_tarball, default_cache_dir
from tests.support.clients import missing

DATA_ROOT_ENV = "RESERVOIR_TEST_DOCKER_ROOT"
DEFAULT_DATA_ROOT = Path("/var/cache/reservoir-test-docker")
CACHE_DIR = default_cache_dir()


@dataclass(frozen=True)
class Engine:
    url: str  # a DOCKER_HOST value
    process: subprocess.Popen[bytes]
    log: Path


def python_image_tarball() -> Path:
    """The cached root filesystem tarball (sessions.images); skips when it cannot be built here."""
    try:
        return debootstrap_tarball(CACHE_DIR)
    except ReservoirError as exc:
        missing(f"a debootstrapped Python image ({exc.message})")
        raise


@contextmanager
def running_engine(instance: str = "") -> Iterator[Engine]:
    """dockerd with the test flags; skips (or fails, in CI) when it cannot start here.

    `instance` names a further engine beside the first (its data root gets that suffix):
    two engines never share a data root, each has its own socket, exec root and pid file.
    """
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        missing("a Docker engine (dockerd, run as root)")
    assert dockerd is not None
    base = Path(os.environ.get(DATA_ROOT_ENV, DEFAULT_DATA_ROOT))
    data_root = base.with_name(f"{base.name}-{instance}") if instance else base
    data_root.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="reservoir-dockerd-"))
    sock = run_dir / "docker.sock"
    log = run_dir / "dockerd.log"
    process: subprocess.Popen[bytes] | None = None
    for driver in ("overlay2", "vfs"):
        with log.open("ab") as out:
            process = subprocess.Popen(
                [dockerd, "--bridge=none", "--iptables=false", "--ip6tables=false", f"--storage-driver={driver}",
                 "--data-root", str(data_root), "--exec-root", str(run_dir / "exec"), "--pidfile", str(run_dir / "docker.pid"),
                 "--host", f"unix://{sock}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if _wait_for_socket(sock, process):
            break
        _stop(process)
        process = None
    if process is None:
        missing(f"a Docker engine that starts here (see {log}: {log.read_text()[-300:]!r})")
    assert process is not None
    try:
        yield Engine(url=f"unix://{sock}", process=process, log=log)
    finally:
        _stop(process)
        # dockerd leaves its default network namespace mounted under the exec root when it exits.
        subprocess.run(["umount", str(run_dir / "exec" / "netns" / "default")], capture_output=True, timeout=30)
        shutil.rmtree(run_dir, ignore_errors=True)


def _wait_for_socket(sock: Path, process: subprocess.Popen[bytes]) -> bool:
    import docker

    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if sock.exists():
            try:
                client = docker.DockerClient(base_url=f"unix://{sock}", timeout=5)
                client.ping()
                client.close()
                return True
            except docker.errors.DockerException:
                pass
        time.sleep(0.2)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
