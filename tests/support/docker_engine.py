"""A real Docker engine for the session tests, and a minimal Python image made without any registry.

The engine runs with its own socket, exec root and pid file in a temporary folder, no bridge
and no iptables rules, so it touches nothing the machine already runs. Its data root lives
outside the checkout and is kept between runs (images stay imported).

The image is a `debootstrap --variant=minbase` root with python3, pip and venv, from the
suite and mirror the host's own apt sources name; its tarball is cached under
~/.cache/reservoir/images keyed by those inputs, so a fresh machine pays for it once.
"""

from __future__ import annotations

import hashlib
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

from tests.support.clients import missing

IMAGE_PACKAGES = ("python3", "python3-pip", "python3-venv")
DATA_ROOT_ENV = "RESERVOIR_TEST_DOCKER_ROOT"
DEFAULT_DATA_ROOT = Path("/var/cache/reservoir-test-docker")
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reservoir" / "images"


@dataclass(frozen=True)
class Engine:
    url: str  # a DOCKER_HOST value
    process: subprocess.Popen[bytes]
    log: Path


def _host_apt_source() -> tuple[str, str] | None:
    """(suite, mirror URL) of the host's first deb822 source that is not a security or updates suite."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        fields: dict[str, str] = {}
        for line in path.read_text().splitlines() + [""]:
            if not line.strip():
                if fields.get("URIs") and fields.get("Suites") and "deb" in fields.get("Types", "").split():
                    suites = [s for s in fields["Suites"].split() if "-" not in s]
                    if suites:
                        return suites[0], fields["URIs"].split()[0]
                fields = {}
                continue
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        for line in listing.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "-" not in parts[2]:
                url = next(p for p in parts[1:] if "://" in p)
                return parts[parts.index(url) + 1], url
    return None


def python_image_tarball() -> Path:
    """The cached root filesystem tarball; built with debootstrap when missing."""
    source = _host_apt_source()
    if source is None:
        missing("an apt source on this host (to debootstrap a Python image)")
    assert source is not None
    suite, mirror = source
    key = hashlib.sha256("\0".join([suite, mirror, "minbase", *IMAGE_PACKAGES]).encode()).hexdigest()[:16]
    tarball = CACHE_DIR / f"python-{suite}-{key}.tar"
    if tarball.exists():
        return tarball
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        missing("the `debootstrap` executable")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reservoir-rootfs-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        result = subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={','.join(IMAGE_PACKAGES)}", suite, str(root), mirror],
            capture_output=True,
            timeout=900,
        )
        if result.returncode != 0:
            missing(f"a debootstrap of {suite} from {mirror} ({result.stderr.decode()[-300:]})")
        partial = tarball.with_suffix(".tar.partial")
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "--exclude=./var/cache/apt/archives/*.deb", "-cf", str(partial), "."], check=True, timeout=600)
        partial.rename(tarball)
    return tarball


@contextmanager
def running_engine() -> Iterator[Engine]:
    """dockerd with the test flags; skips (or fails, in CI) when it cannot start here."""
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        missing("a Docker engine (dockerd, run as root)")
    assert dockerd is not None
    data_root = Path(os.environ.get(DATA_ROOT_ENV, DEFAULT_DATA_ROOT))
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
