"""A throwaway Debian root for real `apt-get` runs: `debootstrap --variant=minbase`, cached between runs.

The root is made from the host's own apt sources (their first `deb` source's
URI, first suite and Signed-By keyring; never a host name written here),
cached under `~/.cache/reservoir/debootstrap/<sha256 of its inputs>/` and
copied per test with `cp -a --reflink=auto`. `chroot` enters it; its apt
sources are replaced by the site's alone. Needs root (chroot, debootstrap),
the network on the first run only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from downloader.apt.sources import AptSource, read_sources
from reservoir.blobs import BlobStore

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reservoir" / "debootstrap"
DEBOOTSTRAP_TIMEOUT_S = 900
CHROOT_TIMEOUT_S = 300


class NoDebootstrap(Exception):
    """What the host lacks to make a root (the message says which)."""


@dataclass(frozen=True)
class RootSpec:
    suite: str
    mirror: str
    keyring: str | None

    @property
    def digest(self) -> str:
        version = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "debootstrap"], capture_output=True,
                                 text=True, check=False).stdout
        text = f"minbase\n{self.suite}\n{self.mirror}\n{self.keyring}\n{version}\nv1"
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def host_root_spec() -> RootSpec:
    for source in read_sources():
        if "deb" in source.types and source.uris and source.suites:
            keyring = next((k for k in source.signed_by if k.startswith("/") and Path(k).is_file()), None)
            return RootSpec(source.suites[0], source.uris[0], keyring)
    raise NoDebootstrap("the host has no apt source to debootstrap from")


def cached_root(spec: RootSpec) -> Path:
    """The cached root for `spec`, made now if missing (minutes, network)."""
    if os.geteuid() != 0:
        raise NoDebootstrap("debootstrap and chroot need root")
    if shutil.which("debootstrap") is None:
        raise NoDebootstrap("debootstrap is not installed")
    final = CACHE / spec.digest
    if (final / "usr" / "bin" / "apt-get").is_file():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=CACHE))
    try:
        command = ["debootstrap", "--variant=minbase"]
        if spec.keyring:
            command.append(f"--keyring={spec.keyring}")
        command += [spec.suite, str(work / "root"), spec.mirror]
        done = subprocess.run(command, capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT_S, check=False)
        if done.returncode != 0:
            raise NoDebootstrap(f"debootstrap failed: {(done.stdout + done.stderr).strip().splitlines()[-1:]}")
        # The host's apt lists and debs are no part of what a test starts from.
        subprocess.run(["chroot", str(work / "root"), "apt-get", "clean"], check=False, capture_output=True,
                       timeout=CHROOT_TIMEOUT_S)
        os.rename(work / "root", final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def fresh_root(into: Path) -> Path:
    """A private copy of the cached root at `into`, with no apt source at all."""
    spec = host_root_spec()
    cached = cached_root(spec)
    subprocess.run(["cp", "-a", "--reflink=auto", str(cached), str(into)], check=True, timeout=CHROOT_TIMEOUT_S)
    etc_apt = into / "etc" / "apt"
    (etc_apt / "sources.list").unlink(missing_ok=True)
    for path in (etc_apt / "sources.list.d").glob("*"):
        path.unlink()
    shutil.rmtree(into / "var" / "lib" / "apt" / "lists", ignore_errors=True)
    (into / "var" / "lib" / "apt" / "lists" / "partial").mkdir(parents=True)
    return into


def in_root(root: Path, *command: str, timeout: float = CHROOT_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """`command` inside the root (chroot), non-interactive, its output captured."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8",
           "HOME": "/root"}
    return subprocess.run(["chroot", str(root), *command], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)


def remove_root(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------ the host's real archive


def real_source() -> AptSource | None:
    """The host's first signed `deb` source (what the real-upstream tests sync), or None."""
    found = [s for s in read_sources() if "deb" in s.types and s.uris and s.suites and s.signed_by]
    return found[0] if found else None


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "file":
        return True
    try:
        with socket.create_connection((parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)),
                                      timeout=5):
            return True
    except OSError:
        return False


def blob_cache() -> Path:
    """Blobs of the real archive (`.deb`s, Packages indices) by sha256, outside the checkout: a rerun
    downloads only what the archive changed since."""
    root = Path(os.environ.get("RESERVOIR_TEST_CACHE") or Path.home() / ".cache" / "reservoir-tests") / "debs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def seed_blobs(blobs: BlobStore, cache: Path) -> None:
    """The cached blobs into a fresh store, each verified again on the way in."""
    for cached in cache.iterdir():
        if len(cached.name) == 64 and not blobs.has(cached.name):
            with blobs.writer(cached.name) as writer:
                writer.write(cached.read_bytes())
                writer.commit()


def keep_blobs(blobs: BlobStore, cache: Path) -> None:
    """What a sync stored, for the next run."""
    for sha in blobs.iter_digests():
        target = cache / sha
        if not target.exists():
            tmp = cache / f".tmp-{sha[:12]}-{os.getpid()}"
            shutil.copyfile(blobs.path(sha), tmp)
            os.replace(tmp, target)
