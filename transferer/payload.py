"""The payload: a plain tar stream of `blobs/<sha256>` members, cut into parts.

Writing hashes each part as it is written (no second pass); reading
streams the parts back as one tar stream, hashing each part as it is read,
so one pass both extracts and verifies. Part hashes run on a thread of
their own (hashlib releases the GIL), beside the reads, writes and blob
hashes of the main thread. The tar is standard (ustar): an
operator can inspect it with `cat payload.tar.* | tar t`.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from reservoir.blobs import SHA256_RE, BlobStore
from transferer.format import PART_PREFIX, BundleError, PartRef, Toc

BLOCK = 512
BUFFER = 4 << 20


class BackgroundHash:
    """A sha256 fed on a worker thread, one chunk ahead of the caller at most.

    ``update`` waits for the previous chunk's hash before handing over the
    next, so a caller alternating between two buffers may refill the one
    handed over two calls ago.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="part-hash")
        self._pending: Future[None] | None = None

    def update(self, data: bytes | memoryview) -> None:
        self._wait()
        self._pending = self._executor.submit(self._hash.update, data)

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def hexdigest(self) -> str:
        self._wait()
        self._executor.shutdown()
        return self._hash.hexdigest()


@dataclass
class PartWriter:
    """Writes a byte stream into `payload.tar.NNN` files of at most `part_size` bytes."""

    folder: Path
    part_size: int
    parts: list[PartRef] = field(default_factory=list)
    _file: BinaryIO | None = field(default=None, init=False)
    _hash: BackgroundHash | None = field(default=None, init=False)
    _written: int = field(default=0, init=False)

    def _open_next(self) -> None:
        self._close_current()
        name = f"{PART_PREFIX}{len(self.parts):03d}"
        self._file = open(self.folder / name, "wb", buffering=0)
        self._hash = BackgroundHash()
        self._written = 0
        self.parts.append(PartRef(name, 0, ""))

    def _close_current(self) -> None:
        if self._file is None or self._hash is None:
            return
        os.fsync(self._file.fileno())
        self._file.close()
        last = self.parts[-1]
        self.parts[-1] = PartRef(last.name, self._written, self._hash.hexdigest())
        self._file = None

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self._file is None or self._written >= self.part_size:
                self._open_next()
            assert self._file is not None and self._hash is not None
            room = self.part_size - self._written
            chunk = view[:room]
            self._hash.update(chunk)
            self._file.write(chunk)
            self._written += len(chunk)
            view = view[len(chunk) :]

    def close(self) -> Toc:
        if self._file is None and not self.parts:
            self._open_next()
        self._close_current()
        return Toc(tuple(self.parts))


def _member_header(sha256: str, size: int) -> bytes:
    info = tarfile.TarInfo(f"blobs/{sha256}")
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def write_payload(store: BlobStore, digests: list[str], writer: PartWriter, on_bytes: Callable[[int], None]) -> None:
    # Two buffers in turn: the part hash may still be reading the one written last (see BackgroundHash).
    buffers = (bytearray(BUFFER), bytearray(BUFFER))
    turn = 0
    for sha256 in digests:
        path = store.path(sha256)
        size = path.stat().st_size
        writer.write(_member_header(sha256, size))
        with open(path, "rb", buffering=0) as f:
            remaining = size
            while remaining:
                buffer = buffers[turn]
                turn ^= 1
                n = f.readinto(buffer)
                if not n:
                    raise BundleError(f"blob {sha256} shrank while being exported")
                writer.write(memoryview(buffer)[:n])
                remaining -= n
                on_bytes(n)
        pad = (-size) % BLOCK
        if pad:
            writer.write(bytes(pad))
    writer.write(bytes(BLOCK * 2))


@dataclass
class PartReader:
    """Reads the parts as one stream, checking each part's size and sha256 as it ends."""

    folder: Path
    toc: Toc
    on_bytes: Callable[[int], None] = lambda n: None
    _index: int = field(default=-1, init=False)
    _file: BinaryIO | None = field(default=None, init=False)
    _hash: BackgroundHash | None = field(default=None, init=False)
    _read: int = field(default=0, init=False)

    def _next_part(self) -> bool:
        self._finish_part()
        self._index += 1
        if self._index >= len(self.toc.parts):
            return False
        part = self.toc.parts[self._index]
        try:
            self._file = open(self.folder / part.name, "rb", buffering=0)
        except FileNotFoundError:
            raise BundleError(f"part {part.name} is missing") from None
        self._hash = BackgroundHash()
        self._read = 0
        return True

    def _finish_part(self) -> None:
        if self._file is None or self._hash is None:
            return
        part = self.toc.parts[self._index]
        extra = self._file.read(1)
        self._file.close()
        self._file = None
        if extra or self._read != part.size:
            raise BundleError(f"part {part.name} has the wrong size (expected {part.size} bytes)")
        if self._hash.hexdigest() != part.sha256:
            raise BundleError(f"part {part.name} is corrupt (sha256 mismatch)")

    def read(self, n: int) -> bytes:
        """Exactly `n` bytes, or fewer only at the end of the last part."""
        pieces: list[bytes] = []
        got = 0
        while got < n:
            if self._file is None and not self._next_part():
                break
            assert self._file is not None and self._hash is not None
            part = self.toc.parts[self._index]
            want = min(n - got, part.size - self._read)
            chunk = self._file.read(want) if want else b""
            if not chunk:
                if self._read < part.size:
                    raise BundleError(f"part {part.name} is truncated ({self._read} of {part.size} bytes)")
                if not self._next_part():
                    break
                continue
            self._hash.update(chunk)
            self._read += len(chunk)
            self.on_bytes(len(chunk))
            pieces.append(chunk)
            got += len(chunk)
        # Mostly one piece: returned as read, no copy.
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def finish(self) -> None:
        """Check the rest of the parts (hashes included) once the tar stream has ended."""
        while True:
            tail = self.read(BUFFER)
            if not tail:
                break
            if any(tail):
                raise BundleError("unexpected data after the end of the payload")
        self._finish_part()


def read_members(reader: PartReader) -> Iterator[tuple[str, int]]:
    """Yield (sha256, size) of each member; the caller must then read exactly `size` bytes and the padding."""
    while True:
        header = reader.read(BLOCK)
        if len(header) < BLOCK:
            raise BundleError("payload ends in the middle of a tar header")
        if header == bytes(BLOCK):
            return
        try:
            info = tarfile.TarInfo.frombuf(header, "utf-8", "strict")
        except tarfile.TarError as exc:
            raise BundleError(f"payload has a corrupt tar header ({exc})") from exc
        name = info.name
        if not info.isreg() or not name.startswith("blobs/") or not SHA256_RE.match(name[6:]):
            raise BundleError(f"payload member {name[:80]!r} is not a blob (refusing path tricks)")
        yield name[6:], info.size
