"""A minimal Python image made without any registry: a debootstrap root, cached by its inputs.

No registry can be reached from a site, so an image is a root filesystem
tarball imported into each engine. This one is `debootstrap --variant=minbase`
with python3, pip and venv, from the suite and mirror the host's own apt
sources name (the site's own APT mirror, or a distribution mirror on a
connected machine). The tarball is cached under
~/.cache/reservoir/images/ keyed by those inputs, so a machine pays for
the debootstrap once; `reservoir session image build --debootstrap`, the
demo and the tests all use this cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reservoir.errors import ReservoirError

IMAGE_PACKAGES = ("python3", "python3-pip", "python3-venv")
SOURCES_DIR = Path("/etc/apt/sources.list.d")
SOURCES_LIST = Path("/etc/apt/sources.list")


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reservoir" / "images"


@dataclass(frozen=True)
class AptOrigin:
    suite: str
    mirror: str  # URL


def _deb822_origin(text: str) -> AptOrigin | None:
    fields: dict[str, str] = {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if fields.get("URIs") and fields.get("Suites") and "deb" in fields.get("Types", "").split():
                suites = [s for s in fields["Suites"].split() if "-" not in s]  # not -updates, -security
                if suites:
                    return AptOrigin(suites[0], fields["URIs"].split()[0])
            fields = {}
            continue
        if line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return None


def _one_line_origin(text: str) -> AptOrigin | None:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "deb":
            url = next((p for p in parts[1:] if "://" in p), None)
            if url is not None and parts.index(url) + 1 < len(parts):
                suite = parts[parts.index(url) + 1]
                if "-" not in suite:
                    return AptOrigin(suite, url)
    return None


def host_apt_origin(sources_dir: Path = SOURCES_DIR, sources_list: Path = SOURCES_LIST) -> AptOrigin | None:
    """The host's first apt source that is a release suite (not -updates or -security)."""
    for path in sorted(sources_dir.glob("*.sources")):
        origin = _deb822_origin(path.read_text())
        if origin is not None:
            return origin
    for path in [sources_list, *sorted(sources_dir.glob("*.list"))]:
        if path.exists():
            origin = _one_line_origin(path.read_text())
            if origin is not None:
                return origin
    return None


def tarball_path(cache_dir: Path, origin: AptOrigin, packages: tuple[str, ...] = IMAGE_PACKAGES) -> Path:
    """Where the tarball for these inputs lives in the cache (same inputs, same file)."""
    key = hashlib.sha256("\0".join([origin.suite, origin.mirror, "minbase", *packages]).encode()).hexdigest()[:16]
    return cache_dir / f"python-{origin.suite}-{key}.tar"


def debootstrap_tarball(
    cache_dir: Path | None = None, origin: AptOrigin | None = None, packages: tuple[str, ...] = IMAGE_PACKAGES
) -> Path:
    """The cached root filesystem tarball for `origin` (default: the host's apt source); debootstrapped when missing."""
    origin = origin or host_apt_origin()
    if origin is None:
        raise ReservoirError(
            "no apt source on this host to debootstrap an image from",
            hint="pass --suite and --mirror (the site's Debian mirror), or import a tarball with `session image import`",
        )
    tarball = tarball_path(cache_dir or default_cache_dir(), origin, packages)
    if tarball.exists():
        return tarball
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ReservoirError("debootstrap is not installed", hint="apt-get install debootstrap")
    if os.geteuid() != 0:
        raise ReservoirError("debootstrap needs root", hint="run this command as root")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reservoir-rootfs-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        result = subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={','.join(packages)}", origin.suite, str(root), origin.mirror],
            capture_output=True,
            timeout=1800,
        )
        if result.returncode != 0:
            last = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise ReservoirError(
                f"debootstrap of {origin.suite} from {origin.mirror} failed: {last[0]}",
                hint="check that the mirror is reachable and carries that suite",
            )
        # Written beside its final name, then renamed: a killed build never leaves a tarball that looks complete.
        partial = tarball.with_suffix(".tar.partial")
        subprocess.run(
            ["tar", "-C", str(root), "--numeric-owner", "--exclude=./var/cache/apt/archives/*.deb", "-cf", str(partial), "."],
            check=True,
            timeout=900,
        )
        partial.rename(tarball)
    return tarball


__all__ = ["IMAGE_PACKAGES", "AptOrigin", "debootstrap_tarball", "default_cache_dir", "host_apt_origin", "tarball_path"]
