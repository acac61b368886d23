"""What a `.deb` declares about its licenses, for vetting: its DEP-5 `copyright` file.

A `.deb` is an ar archive (`debian-binary`, `control.tar.*`, `data.tar.*`);
the package's copyright file is `usr/share/doc/<package>/copyright` inside
the data tarball (gz, xz, zst or plain). It is read with the standard
library and python-debian's `arfile` only, never extracted to disk, and with
bounds: one member of at most `licenses.files.MAX_MEMBER_BYTES`.

`license_files(filename, stream)` has the shape of
`licenses.files.license_files`, so the vetter can call it for `.deb`
artifacts; `declared_license` reads the result as `licenses.declared` does.
"""

from __future__ import annotations

import tarfile
from pathlib import PurePosixPath
from typing import BinaryIO

from debian.arfile import ArError, ArFile

from licenses.declared import Declared, declared_debian_copyright
from licenses.files import MAX_MEMBER_BYTES, LicenseFile

# A data tarball this large is read as a stream; only the copyright member is kept.
_DATA_PREFIX = "data.tar"


def _data_tar(stream: BinaryIO) -> tarfile.TarFile | None:
    archive = ArFile(fileobj=stream)
    for member in archive.getmembers():
        name = member.name.decode() if isinstance(member.name, bytes) else member.name
        if not name.startswith(_DATA_PREFIX):
            continue
        if name.endswith(".zst"):
            try:
                import zstandard  # type: ignore[import-not-found]
            except ImportError:
                return None  # no reader: the vetter falls back to scanning what it can
            reader = zstandard.ZstdDecompressor().stream_reader(member)
            return tarfile.open(fileobj=reader, mode="r|")
        return tarfile.open(fileobj=member, mode="r|*")
    return None


def copyright_member(package: str) -> str:
    return f"usr/share/doc/{package}/copyright"


def license_files(filename: str, stream: BinaryIO, package: str | None = None) -> list[LicenseFile]:
    """The package's copyright file (`usr/share/doc/<package>/copyright`), or none.

    `package` defaults to the name the file name gives (`name_version_arch.deb`).
    """
    package = package or PurePosixPath(filename).name.split("_", 1)[0]
    wanted = {copyright_member(package), "./" + copyright_member(package)}
    try:
        data = _data_tar(stream)
        if data is None:
            return []
        with data:
            for info in data:
                if info.name not in wanted:
                    continue
                if not info.isfile() or info.size > MAX_MEMBER_BYTES:
                    return []
                handle = data.extractfile(info)
                if handle is None:
                    return []
                return [LicenseFile(filename, copyright_member(package), handle.read())]
    except (ArError, tarfile.TarError, EOFError, OSError, ValueError, UnicodeDecodeError):
        return []
    return []


def declared_license(filename: str, stream: BinaryIO, package: str | None = None) -> Declared | None:
    """The licenses a `.deb`'s DEP-5 copyright file declares (None: none, or not machine-readable)."""
    for found in license_files(filename, stream, package):
        return declared_debian_copyright(found.text())
    return None

