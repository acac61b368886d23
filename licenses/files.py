"""License-bearing files inside release archives (wheels, sdists, later .deb/.rpm/R tarballs)."""

from __future__ import annotations

import hashlib
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

# Basenames that carry license terms or declarations (case-insensitive).
LICENSE_FILE = re.compile(r"^(licen[cs]e|copying|notice|copyright|unlicense)([._-].*)?$", re.IGNORECASE)
# MIT-LICENSE, Apache-LICENSE.txt, ...
LICENSE_SUFFIX = re.compile(r"^[A-Za-z0-9.+]+[_-](licen[cs]e|copying)(\.(txt|md|rst))?$", re.IGNORECASE)
NOT_LICENSE_SUFFIXES = (".py", ".pyc", ".c", ".h", ".html")
METADATA_FILE = re.compile(r"^(METADATA|PKG-INFO|DESCRIPTION)$")
DEBIAN_COPYRIGHT = "debian/copyright"
# A license text is small; anything bigger is not one (and must not fill memory).
MAX_MEMBER_BYTES = 2 * 1024 * 1024
MAX_MEMBERS = 64


@dataclass(frozen=True)
class LicenseFile:
    """One license-bearing member: its path in the archive, its content and that content's sha256."""

    archive: str
    member: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def is_metadata(self) -> bool:
        return bool(METADATA_FILE.match(PurePosixPath(self.member).name))

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def is_license_bearing(member: str) -> bool:
    path = PurePosixPath(member)
    if member.endswith(DEBIAN_COPYRIGHT):
        return True
    if METADATA_FILE.match(path.name):
        # Only the package's own metadata, not a vendored project's PKG-INFO deep inside.
        return len(path.parts) <= 2
    if path.name.endswith(NOT_LICENSE_SUFFIXES):
        return False
    if _in_license_folder(path):
        return True
    return bool(LICENSE_FILE.match(path.name) or LICENSE_SUFFIX.match(path.name))


def _in_license_folder(path: PurePosixPath) -> bool:
    """PEP 639 puts license files, whatever their names, under .dist-info/licenses/; REUSE under LICENSES/."""
    folders = path.parts[:-1]
    for i, folder in enumerate(folders):
        if folder == "licenses" and i > 0 and folders[i - 1].endswith(".dist-info"):
            return True
        if folder == "LICENSES" and i <= 1:  # at the top of a wheel or an sdist
            return True
    return False


def license_files(filename: str, stream: BinaryIO) -> list[LicenseFile]:
    """The license-bearing members of one archive; an unreadable archive yields none."""
    lowered = filename.lower()
    try:
        if lowered.endswith((".whl", ".zip", ".egg")):
            return _from_zip(filename, stream)
        if lowered.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")):
            return _from_tar(filename, stream)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError):
        return []
    return []


def _from_zip(filename: str, stream: BinaryIO) -> list[LicenseFile]:
    found = []
    with zipfile.ZipFile(stream) as archive:
        for info in archive.infolist():
            if info.is_dir() or info.file_size > MAX_MEMBER_BYTES or not is_license_bearing(info.filename):
                continue
            found.append(LicenseFile(filename, info.filename, archive.read(info)))
            if len(found) >= MAX_MEMBERS:
                break
    return found


def _from_tar(filename: str, stream: BinaryIO) -> list[LicenseFile]:
    found = []
    with tarfile.open(fileobj=stream, mode="r:*") as archive:
        for info in archive:
            if not info.isfile() or info.size > MAX_MEMBER_BYTES or not is_license_bearing(info.name):
                continue
            handle = archive.extractfile(info)
            if handle is not None:
                found.append(LicenseFile(filename, info.name, handle.read()))
            if len(found) >= MAX_MEMBERS:
                break
    return found


def write_for_scan(files: list[LicenseFile], folder: Path) -> dict[str, Path]:
    """Each distinct content once under `folder`, named by its sha256 (what the scanner reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for item in files:
        if item.sha256 in paths:
            continue
        # Keep the member's own name as suffix: scancode weighs a file called LICENSE differently.
        path = folder / item.sha256 / PurePosixPath(item.member).name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(item.data)
        paths[item.sha256] = path
    return paths
