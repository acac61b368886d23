"""The payload: a plain tar stream of `blobs/<sha256>` members, cut into parts.

Writing hashes each part as it is written (no second pass); reading
streams the parts back as one tar stream, hashing each part as it is read,
so one pass both extracts and verifies. Part hashes run on a thread of
their own (hashlib releases the GIL), beside the reads, writes and blob
hashes of the main thread. The tar is standard (ustar): an
operator can inspect it with `cat payload.tar.* | tar t`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tarfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from reservoir.blobs import SHA256_RE, BlobStore
from reservoir.directio import (
    AlignedBuffer,
    DirectFile,
    StagingBuffer,
    in_page_cache,
    set_direct,
    try_direct,
)
from transferer.format import PART_PREFIX, BundleError, PartRef, Toc

BLOCK = 512
BUFFER = 4 << 20
# Reads of the parts in flight ahead of the importer.
READS_AHEAD = 3
# Below this a chunk is hashed on the caller's thread (tar headers, small blobs).
INLINE_HASH_BYTES = 256 << 10


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
        if len(data) < INLINE_HASH_BYTES:
            self._hash.update(data)  # cheaper than the hand-over to the thread and back
            return
        self._pending = self._executor.submit(self._hash.update, data)

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def hexdigest(self) -> str:
        self._wait()
        self._executor.shutdown()
        return self._hash.hexdigest()

    def close(self) -> None:
        """Stop the thread without a digest (the stream failed)."""
        self._executor.shutdown(cancel_futures=True)


@dataclass
class PartWriter:
    """Writes a byte stream into `payload.tar.NNN` files of at most `part_size` bytes."""

    folder: Path
    part_size: int
    parts: list[PartRef] = field(default_factory=list)
    _file: DirectFile | None = field(default=None, init=False)
    _hash: BackgroundHash | None = field(default=None, init=False)
    _written: int = field(default=0, init=False)
    _staging: StagingBuffer | None = field(default=None, init=False)

    def _open_next(self) -> None:
        self._close_current()
        name = f"{PART_PREFIX}{len(self.parts):03d}"
        # Parts go around the page cache: written once, fsynced at once, read on another machine.
        self._staging = self._staging or StagingBuffer()
        self._file = DirectFile.create(self.folder / name, self._staging)
        self._hash = BackgroundHash()
        self._written = 0
        self.parts.append(PartRef(name, 0, ""))

    def _close_current(self) -> None:
        if self._file is None or self._hash is None:
            return
        self._file.fsync()
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
        if self._staging is not None:
            self._staging.close()
        return Toc(tuple(self.parts))

    def abort(self) -> None:
        """Stop after a failure, releasing the file and threads; the parts written are the caller's to remove."""
        if self._file is not None:
            self._file.abandon()
            self._file = None
        if self._hash is not None:
            self._hash.close()
            self._hash = None
        if self._staging is not None:
            with contextlib.suppress(OSError):
                self._staging.close()
            self._staging = None


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
    """Reads the parts as one stream, checking each part's size and sha256 as it ends.

    Parts are read in whole buffers from the page cache when they are in it
    (a bundle just copied into the inbox), and otherwise around it
    (O_DIRECT where the filesystem allows): an import reads each byte once,
    and from removable media that is cold anyway. A reader thread keeps
    READS_AHEAD buffers in flight ahead of the caller and hands each to the
    part hash's thread, so the device, the part hash and the caller's own
    work overlap (the hash is at most one buffer behind the reads). The
    buffers turn: those being read, the caller's current one, and the one
    before it, which the caller's last slice may still point into.
    """

    folder: Path
    toc: Toc
    on_bytes: Callable[[int], None] = lambda n: None
    _index: int = field(default=-1, init=False)
    _fd: int = field(default=-1, init=False)
    _hash: BackgroundHash | None = field(default=None, init=False)
    _read: int = field(default=0, init=False)
    _buffers: tuple[AlignedBuffer, ...] = field(init=False)
    _turn: int = field(default=0, init=False)
    _chunk: memoryview = field(default=memoryview(b""), init=False)
    _ahead: deque[Future[memoryview | None]] = field(default_factory=deque, init=False)
    _direct: bool = field(default=False, init=False)
    cached_bytes: int = field(default=0, init=False)  # how much came from the page cache
    _reader: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self._buffers = tuple(AlignedBuffer(BUFFER) for _ in range(READS_AHEAD + 2))
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="part-read")

    # --- on the reader thread ---------------------------------------------------------

    def _next_part(self) -> bool:
        self._finish_part()
        self._index += 1
        if self._index >= len(self.toc.parts):
            return False
        part = self.toc.parts[self._index]
        try:
            fd = os.open(self.folder / part.name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BundleError(f"part {part.name} is missing") from None
        size = os.fstat(fd).st_size
        if size != part.size:
            os.close(fd)
            if size < part.size:
                raise BundleError(f"part {part.name} is truncated ({size} of {part.size} bytes)")
            raise BundleError(f"part {part.name} has the wrong size (expected {part.size} bytes)")
        self._direct = try_direct(fd)
        if self._direct:
            set_direct(fd, False)  # on only for the reads the cache cannot answer (_read_into)
            # No readahead: a read the cache answers must not start filling it with what comes next.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        self._fd = fd
        self._hash = BackgroundHash()  # on a third thread, so the next read starts at once
        self._read = 0
        return True

    def _finish_part(self) -> None:
        if self._fd < 0 or self._hash is None:
            return
        part = self.toc.parts[self._index]
        os.close(self._fd)
        self._fd = -1
        if self._read != part.size:
            raise BundleError(f"part {part.name} is truncated ({self._read} of {part.size} bytes)")
        if self._hash.hexdigest() != part.sha256:
            raise BundleError(f"part {part.name} is corrupt (sha256 mismatch)")

    def _read_chunk(self, buffer: AlignedBuffer) -> memoryview | None:
        """The next piece of the stream, read into `buffer` and hashed; None after the last part checked out."""
        while True:
            if self._fd < 0 and not self._next_part():
                return None
            part = self.toc.parts[self._index]
            if self._read >= part.size:
                if not self._next_part():
                    return None
                continue
            n = self._read_into(buffer.view)
            if n == 0:
                raise BundleError(f"part {part.name} is truncated ({self._read} of {part.size} bytes)")
            n = min(n, part.size - self._read)  # it grew after the size check: the rest is not the bundle's
            chunk = buffer.view[:n]
            assert self._hash is not None
            self._hash.update(chunk)
            self._read += n
            return chunk

    def _read_into(self, view: memoryview) -> int:
        """Bytes at the current offset: from the page cache if they are there, else from the device around it.

        A bundle copied into the inbox moments ago is still in the cache (and
        maybe not yet on disk); reading it directly would first force it out
        to the device and then read it back.
        """
        fd, offset = self._fd, self._read
        part_size = self.toc.parts[self._index].size  # the file's size too: checked when it opened
        if not self._direct or in_page_cache(fd, offset, min(len(view), part_size - offset)):
            n = os.preadv(fd, [view], offset)
            if self._direct:
                self.cached_bytes += n
            return n
        set_direct(fd, True)
        try:
            return os.preadv(fd, [view], offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._direct = False  # alignment (or O_DIRECT) this file refuses: through the cache from here on
        finally:
            set_direct(fd, False)
        return os.preadv(fd, [view], offset)

    # --- on the caller's thread -------------------------------------------------------

    def _read_ahead(self) -> None:
        while len(self._ahead) < READS_AHEAD:
            buffer = self._buffers[self._turn]
            self._turn = (self._turn + 1) % len(self._buffers)
            self._ahead.append(self._reader.submit(self._read_chunk, buffer))

    def _refill(self) -> bool:
        """The next buffer of the stream into `_chunk`; False at the end of the last part."""
        self._read_ahead()
        chunk = self._ahead.popleft().result()
        if chunk is None:
            return False
        self._read_ahead()
        self.on_bytes(len(chunk))
        self._chunk = chunk
        return True

    def read(self, n: int) -> bytes | memoryview:
        """Exactly `n` bytes, or fewer only at the end of the last part.

        Mostly a view into a read buffer, valid until the second call after this one.
        """
        pieces: list[memoryview] = []
        got = 0
        while got < n:
            if not self._chunk and not self._refill():
                break
            piece = self._chunk[: n - got]
            self._chunk = self._chunk[len(piece) :]
            pieces.append(piece)
            got += len(piece)
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)

    def read_some(self, n: int) -> memoryview:
        """Between 1 and `n` bytes (empty only at the end): what the current buffer holds, never copied."""
        if not self._chunk and not self._refill():
            return memoryview(b"")
        piece = self._chunk[:n]
        self._chunk = self._chunk[len(piece) :]
        return piece

    def finish(self) -> None:
        """Check the rest of the parts (hashes included) once the tar stream has ended."""
        while True:
            tail = self.read(BUFFER)
            if not tail:
                break
            if bytes(tail).count(0) != len(tail):
                raise BundleError("unexpected data after the end of the payload")

    def close(self) -> None:
        """Stop the reader (after the read in flight) and close the part it has open."""
        for ahead in self._ahead:
            ahead.cancel()
        # The caller is already handling whatever stopped the stream; the reads ahead's own errors add nothing.
        for ahead in self._ahead:
            with contextlib.suppress(Exception):
                ahead.result()
        self._ahead.clear()
        self._reader.shutdown()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_members(reader: PartReader) -> Iterator[tuple[str, int]]:
    """Yield (sha256, size) of each member; the caller must then read exactly `size` bytes and the padding."""
    while True:
        header = bytes(reader.read(BLOCK))
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
