"""What a `.deb` declares about its licenses, for vetting: its DEP-5 `copyright` file.

A `.deb` is an ar archive (`debian-binary`, `control.tar.*`, `data.tar.*`);
the package's copyright file is `usr/share/doc/<package>/copyright` inside
the data tarball (gz, xz, zst or plain). It is read as a stream with the
standard library and python-debian's `arfile` (zstd through the `zstd`
program), never extracted to disk, and with bounds: one member of at most
`licenses.files.MAX_MEMBER_BYTES`.

`license_files(filename, stream)` has the shape of
`licenses.files.license_files`, so the vetter can call it for `.deb`
artifacts; `declared_license` reads the result as `licenses.declared` does.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import BinaryIO

from debian.arfile import ArError, ArFile

from licenses.declared import Declared, declared_debian_copyright
from licenses.files import MAX_MEMBER_BYTES, LicenseFile

_DATA_PREFIX = "data.tar"
_ZSTD_TIMEOUT_S = 30


@contextmanager
def _data_tar(stream: BinaryIO) -> Iterator[tarfile.TarFile | None]:
    """The data tarball of a .deb as a stream (None when there is none)."""
    archive = ArFile(fileobj=stream)
    for member in archive.getmembers():
        name = member.name.decode() if isinstance(member.name, bytes) else member.name
        if not name.startswith(_DATA_PREFIX):
            continue
        if name.endswith(".zst"):
            # Ubuntu's .debs since 21.10; the standard library reads no zstd before Python 3.14.
            with _zstd_stream(member) as raw:
                yield tarfile.open(fileobj=raw, mode="r|") if raw is not None else None
            return
        yield tarfile.open(fileobj=member, mode="r|*")
        return
    yield None


@contextmanager
def _zstd_stream(member: BinaryIO) -> Iterator[BinaryIO | None]:
    zstd = shutil.which("zstd")
    if zstd is None:
        yield None  # the vetter then finds no declaration and scans what it can
        return
    with tempfile.TemporaryFile() as compressed:
        shutil.copyfileobj(member, compressed)
        compressed.seek(0)
        process = subprocess.Popen([zstd, "-dc", "-q"], stdin=compressed, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL)
        try:
            assert process.stdout is not None
            yield process.stdout  # type: ignore[misc]
        finally:
            process.kill()
            process.wait(timeout=_ZSTD_TIMEOUT_S)
            if process.stdout is not None:
                process.stdout.close()


def copyright_member(package: str) -> str:
    return f"usr/share/doc/{package}/copyright"


def license_files(filename: str, stream: BinaryIO, package: str | None = None) -> list[LicenseFile]:
    """The package's copyright file (`usr/share/doc/<package>/copyright`), or none.

    `package` defaults to the name the file name gives (`name_version_arch.deb`).
    """
    package = package or PurePosixPath(filename).name.split("_", 1)[0]
    wanted = {copyright_member(package), "./" + copyright_member(package)}
    try:
        with _data_tar(stream) as data:
            if data is None:
                return []
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

