"""Sequential file I/O around the page cache (O_DIRECT) where the filesystem allows it.

Bundle parts and imported blobs are written once, made durable at once,
and not read again soon. Through the page cache such a write costs a
fresh cache page per 4 KiB and then a writeback before the fsync returns;
straight to the device it costs only the device. On the 2-core VM of
BENCHMARKS.md a durable 1 GiB write took 4.8-5.8 s buffered (write, then
fsync) and 1.1-1.4 s direct.

O_DIRECT needs the buffer, the file offset and the length aligned to the
device's block size, so writes are staged in a page-aligned buffer; the
last, partial block is written padded and the file truncated to its size.
Where O_DIRECT is refused (tmpfs, some FUSE and network filesystems) the
same calls write through the page cache instead. Either way the caller
still syncs (fsync or syncfs) before relying on the bytes: O_DIRECT skips
the cache, not the device's own write cache or the file's metadata.

For reads, ``in_page_cache`` tells (with mincore, no I/O) whether a range
is already cached, so a reader can take cached bytes from the cache and
read only the rest directly; ``set_direct`` switches the flag per read.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import mmap
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

# A multiple of any block size O_DIRECT asks for (512 or 4096), and one page.
ALIGN = 4096
STAGING_BYTES = 4 << 20


class AlignedBuffer:
    """Page-aligned memory (an anonymous map), as O_DIRECT reads and writes need."""

    def __init__(self, size: int) -> None:
        self.map = mmap.mmap(-1, size)
        self.view = memoryview(self.map)
        self.size = size


class StagingBuffer:
    """Two aligned halves and one writer thread: one half goes to the device while the other fills.

    Reused from file to file (one file at a time); jobs run in the order
    queued, one at a time, so a file finished in the background
    (`DirectFile.close_later`) is complete before the next file's first
    half is written. `close()` waits for the last job and stops the thread.
    """

    def __init__(self, size: int = STAGING_BYTES) -> None:
        self.halves = (AlignedBuffer(size), AlignedBuffer(size))
        self.size = size
        self.next_half = 0  # the half the next file starts in: not the one a queued job may still read
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._lock = threading.Lock()

    def queue(self, job: Callable[[], None]) -> None:
        """Run `job` on the writer thread once the job before it is done (its error is raised here)."""
        self.wait()
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="direct-write")
            self._pending = self._executor.submit(job)

    def wait(self) -> None:
        """Wait for the queued job; raises its error (a full disk, say)."""
        with self._lock:
            pending = self._pending
        if pending is None:
            return
        try:
            pending.result()
        finally:
            with self._lock:
                if self._pending is pending:
                    self._pending = None

    def close(self) -> None:
        try:
            self.wait()
        finally:
            with self._lock:
                executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown()


class DirectFile:
    """Writes a file from start to end; `close()` returns its size. One thread writes to it at a time.

    Full halves of the staging buffer are written on the staging buffer's
    thread while the caller fills the other half, so the device's time
    overlaps the caller's reading and hashing. An error there (a full
    disk) surfaces from the next `write`, `flush` or `close`.
    """

    def __init__(self, fd: int, staging: StagingBuffer | None = None) -> None:
        self._fd = fd
        self.direct = try_direct(fd)
        self._own_staging = staging is None and self.direct
        self._staging = staging if staging is not None else (StagingBuffer() if self.direct else None)
        self._half = self._staging.next_half if self._staging is not None else 0
        self._filled = 0
        self.size = 0
        self.closed = False

    @classmethod
    def create(cls, path: Path, staging: StagingBuffer | None = None, mode: int = 0o644) -> DirectFile:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        return cls(fd, staging)

    def fileno(self) -> int:
        return self._fd

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        self.size += len(view)
        staging = self._staging
        if staging is None:
            _write_all(self._fd, view)
            return
        while view:
            half = staging.halves[self._half].view
            n = min(len(view), staging.size - self._filled)
            half[self._filled : self._filled + n] = view[:n]
            self._filled += n
            view = view[n:]
            if self._filled == staging.size:
                self._hand_over_half()

    def flush(self) -> None:
        """Write everything staged (the last block padded, then trimmed) and wait for the device."""
        self._wait()
        if self._staging is None or self.closed:
            return
        self._write_tail(self._take_tail())
        # Past the padding: a later write continues at the true end (through the cache, being unaligned).
        os.lseek(self._fd, self.size, os.SEEK_SET)

    def fsync(self) -> None:
        self.flush()
        os.fsync(self._fd)

    def close(self) -> int:
        if not self.closed:
            try:
                self.flush()
            finally:
                self._release()
        return self.size

    def close_later(self) -> None:
        """`close()` on the staging buffer's thread: returns at once, and a failure surfaces from its next wait.

        The caller must wait on the staging buffer (`StagingBuffer.wait`, or
        its next file's writes) before relying on the file.
        """
        staging = self._staging
        if staging is None or self.closed:
            self.close()
            return
        tail = self._take_tail()
        self.closed = True

        def finish() -> None:
            try:
                self._write_tail(tail)
            finally:
                os.close(self._fd)

        staging.queue(finish)
        staging.next_half = self._half ^ 1
        if self._own_staging:
            staging.close()

    def abandon(self) -> None:
        """Close without writing what is still staged (the file is being thrown away)."""
        if not self.closed:
            try:
                self._wait()
            except OSError:
                pass
            finally:
                self._release()

    def _release(self) -> None:
        self.closed = True
        os.close(self._fd)
        if self._staging is not None:
            self._staging.next_half = self._half
        if self._own_staging and self._staging is not None:
            self._staging.close()

    def _take_tail(self) -> memoryview:
        """What is staged, zero-padded to whole blocks (empty if nothing is); the staging half is then free."""
        assert self._staging is not None
        filled, self._filled = self._filled, 0
        padded = -(-filled // ALIGN) * ALIGN
        half = self._staging.halves[self._half].view
        half[filled:padded] = bytes(padded - filled)
        return half[:padded]

    def _write_tail(self, tail: memoryview) -> None:
        if tail:
            self._write_direct(tail)
        os.ftruncate(self._fd, self.size)  # the padding off again

    def _hand_over_half(self) -> None:
        assert self._staging is not None
        full = self._staging.halves[self._half].view[: self._filled]
        # queue() first waits for the other half's write: that half is about to be filled again.
        self._staging.queue(lambda: self._write_direct(full))
        self._half ^= 1
        self._filled = 0

    def _wait(self) -> None:
        if self._staging is not None:
            self._staging.wait()

    def _write_direct(self, view: memoryview) -> None:
        try:
            written = os.write(self._fd, view)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # Alignment this device will not take after all: this and the rest go through the page cache.
            set_direct(self._fd, False)
            self.direct = False
            _write_all(self._fd, view)
            return
        if written != len(view):
            if not self.direct:
                _write_all(self._fd, view[written:])
                return
            # A regular file writes short only when the device or quota is full.
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


def set_direct(fd: int, on: bool) -> None:
    """Turn O_DIRECT on or off for an open file."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, (flags | os.O_DIRECT) if on else (flags & ~os.O_DIRECT))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        return libc
    except (AttributeError, OSError):  # not Linux
        return None


def in_page_cache(fd: int, offset: int, length: int) -> bool:
    """Whether every page of the range is in the page cache (mincore(2)); no I/O, no readahead.

    False when it cannot tell (unaligned offset, no mincore, a failed map).
    """
    libc = _libc()
    if libc is None or length <= 0 or offset % mmap.PAGESIZE:
        return False
    address = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, offset)
    if address is None or address == ctypes.c_void_p(-1).value:
        return False
    try:
        pages = -(-length // mmap.PAGESIZE)
        residency = (ctypes.c_ubyte * pages)()
        if libc.mincore(address, length, residency) != 0:
            return False
        return all(flag & 1 for flag in bytes(residency))
    finally:
        libc.munmap(address, length)


def try_direct(fd: int) -> bool:
    """Turn O_DIRECT on for an open file; False where the filesystem refuses it."""
    if not getattr(os, "O_DIRECT", 0):
        return False
    try:
        set_direct(fd, True)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
            return False
        raise
    return True
