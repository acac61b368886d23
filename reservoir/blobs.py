"""A content-addressed blob store (aptly's pool, git's objects).

A blob is named by the sha256 of its bytes and lives at
``blobs/ab/cd/abcd...``. Writes go to a temporary file in ``blobs/.tmp``,
are hashed while written, fsynced, and renamed into place, so a blob is
never visible half-written and a kill at any moment leaves at most a stray
temporary file (removed by the next ``BlobStore``). Identical content is
stored once. Consumers publish blobs into served trees by hard link.

Many blobs at once (a bundle import) go through a ``BlobBatch``: the same
guarantees with one filesystem sync for the lot instead of one per file.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from reservoir.directio import DirectFile, StagingBuffer
from reservoir.errors import IntegrityError, ReservoirError

CHUNK = 1 << 20
PLACE_THREADS = 4
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def check_sha256(value: str) -> str:
    """Return `value` if it is a lowercase hex sha256, else raise."""
    if not SHA256_RE.match(value):
        raise IntegrityError(f"not a sha256 digest: {value[:80]!r}")
    return value


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs  # type: ignore[no-any-return]
    except (AttributeError, OSError):  # not Linux
        return None


def sync_filesystem(path: Path) -> None:
    """Make everything written on the filesystem holding `path` durable (syncfs(2)).

    One journal commit for any number of files, where an fsync per file
    costs one each; falls back to sync(2) where syncfs is missing.
    """
    syncfs = _syncfs()
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(path))
    finally:
        os.close(fd)


class DiskFull(ReservoirError):
    pass


def _disk_full(root: Path) -> DiskFull:
    return DiskFull(f"disk full while writing to {root}", hint="free space and retry")


@dataclass
class BlobWriter:
    """Streams one blob into the store; use as a context manager.

    ``expected_sha256`` / ``expected_size``, when given, are checked before
    the blob becomes visible; a mismatch discards the bytes.
    """

    store: BlobStore
    expected_sha256: str | None = None
    expected_size: int | None = None
    batch: BlobBatch | None = None
    # Given: the bytes go around the page cache through this buffer (reservoir.directio).
    staging: StagingBuffer | None = None
    _file: BinaryIO | DirectFile = field(init=False)
    _tmp: Path = field(init=False)
    _hash: hashlib._Hash = field(init=False, default_factory=hashlib.sha256)
    size: int = field(init=False, default=0)
    sha256: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        fd, name = tempfile.mkstemp(dir=self.store.tmp_dir, prefix="blob-")
        self._tmp = Path(name)
        self._file = DirectFile(fd, self.staging) if self.staging is not None else os.fdopen(fd, "wb")

    def write(self, data: bytes | memoryview) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise _disk_full(self.store.root) from exc
            raise
        self._hash.update(data)
        self.size += len(data)

    def commit(self) -> str:
        """Check the bytes and store them; in a batch they become visible when the batch commits."""
        digest = self._hash.hexdigest()
        # A direct writer in a batch finishes its file on the staging thread; the batch's commit waits for it.
        in_background = isinstance(self._file, DirectFile) and self.batch is not None
        try:
            if not in_background:
                self._file.flush()
                if self.batch is None:
                    os.fsync(self._file.fileno())
            self._close(in_background)
        except OSError as exc:
            self.abort()
            if exc.errno == errno.ENOSPC:
                raise _disk_full(self.store.root) from exc
            raise
        if self.expected_size is not None and self.size != self.expected_size:
            self.abort()
            raise IntegrityError(f"size mismatch: expected {self.expected_size} bytes, got {self.size}")
        if self.expected_sha256 is not None and digest != self.expected_sha256:
            self.abort()
            raise IntegrityError(f"sha256 mismatch: expected {self.expected_sha256}, got {digest}")
        self.sha256 = digest
        if self.batch is not None:
            self.batch.add(digest, self._tmp, self.size)
        elif self.store.place(digest, self._tmp):
            fsync_dir(self.store.path(digest).parent)
        return digest

    def abort(self) -> None:
        if isinstance(self._file, DirectFile):
            self._file.abandon()
        elif not self._file.closed:
            self._file.close()
        self._give_back_staging()
        self._tmp.unlink(missing_ok=True)

    def _close(self, in_background: bool = False) -> None:
        try:
            if in_background:
                assert isinstance(self._file, DirectFile)
                self._file.close_later()
            else:
                self._file.close()
        finally:
            self._give_back_staging()

    def _give_back_staging(self) -> None:
        if self.staging is not None and self.batch is not None:
            self.batch.give_back(self.staging)
        self.staging = None

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None or self.sha256 is None:
            self.abort()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / ".tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def size(self, sha256: str) -> int:
        return self.path(sha256).stat().st_size

    def open(self, sha256: str) -> BinaryIO:
        try:
            return open(self.path(sha256), "rb")
        except FileNotFoundError:
            raise ReservoirError(f"blob {sha256} is not in the store at {self.root}") from None

    def writer(self, expected_sha256: str | None = None, expected_size: int | None = None) -> BlobWriter:
        if expected_sha256 is not None:
            check_sha256(expected_sha256)
        return BlobWriter(self, expected_sha256, expected_size)

    def batch(self) -> BlobBatch:
        return BlobBatch(self)

    def place(self, sha256: str, tmp: Path) -> bool:
        """Rename a verified temporary file to its blob name; False (and `tmp` removed) if already stored."""
        final = self.path(sha256)
        if final.exists():
            tmp.unlink(missing_ok=True)
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
        return True

    def put_bytes(self, data: bytes, expected_sha256: str | None = None) -> str:
        with self.writer(expected_sha256, len(data) if expected_sha256 else None) as w:
            w.write(data)
            return w.commit()

    def put_file(self, source: Path, expected_sha256: str | None = None) -> str:
        """Copy `source` into the store (hashing as it copies)."""
        with self.writer(expected_sha256) as w, open(source, "rb") as f:
            while chunk := f.read(CHUNK):
                w.write(chunk)
            return w.commit()

    def verify(self, sha256: str) -> bool:
        """Re-hash a stored blob; False when it is missing or corrupt."""
        path = self.path(sha256)
        return path.is_file() and sha256_file(path) == sha256

    def iter_digests(self) -> Iterator[str]:
        for path in self.root.glob("??/??/*"):
            if SHA256_RE.match(path.name):
                yield path.name

    def link_into(self, sha256: str, dest: Path) -> None:
        """Make `dest` show the blob: a hard link, or a copy across filesystems."""
        src = self.path(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except FileExistsError:
            dest.unlink()
            os.link(src, dest)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            shutil.copyfile(src, dest)

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def clean_stale_temporaries(self, older_than_s: float = 3600.0) -> int:
        """Remove temporaries left by killed writers; returns how many.

        Only files untouched for `older_than_s` go, so a writer in another
        process keeps its file.
        """
        import time

        removed = 0
        cutoff = time.time() - older_than_s
        for tmp in self.tmp_dir.glob("blob-*"):
            try:
                if tmp.stat().st_mtime <= cutoff:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed


class BlobBatch:
    """Blobs written without a sync each, then made durable and visible together.

    Verified blobs wait under their temporary names; ``commit()`` syncs the
    filesystem once, renames them all into place and syncs again, so a
    blob is still never visible before its bytes are on disk. Leaving the
    ``with`` block without a commit (an exception, say) discards them.
    Until the commit, ``store.has()`` does not see them; the batch's own
    ``has``, ``size`` and ``open`` do. Threads may write and commit at once:
    a commit takes the blobs waiting when it starts.
    """

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self._waiting: dict[str, tuple[Path, int]] = {}
        self._lock = threading.Lock()
        self._staging: list[StagingBuffer] = []

    def writer(
        self, expected_sha256: str | None = None, expected_size: int | None = None, *, direct: bool = False
    ) -> BlobWriter:
        """A writer into the batch; `direct`: around the page cache (for large blobs written once, read later)."""
        if expected_sha256 is not None:
            check_sha256(expected_sha256)
        staging = None
        if direct:
            with self._lock:
                staging = self._staging.pop() if self._staging else None
            staging = staging or StagingBuffer()
        return BlobWriter(self.store, expected_sha256, expected_size, batch=self, staging=staging)

    def give_back(self, staging: StagingBuffer) -> None:
        with self._lock:
            self._staging.append(staging)

    def put_bytes(self, data: bytes) -> str:
        with self.writer() as w:
            w.write(data)
            return w.commit()

    def add(self, sha256: str, tmp: Path, size: int) -> None:
        with self._lock:
            if sha256 in self._waiting:
                tmp.unlink(missing_ok=True)
            else:
                self._waiting[sha256] = (tmp, size)

    def has(self, sha256: str) -> bool:
        with self._lock:
            if sha256 in self._waiting:
                return True
        return self.store.has(sha256)

    def open(self, sha256: str) -> BinaryIO:
        """The blob's bytes, from its temporary file while it waits (a commit may rename it meanwhile)."""
        self._finish_direct_writes()
        with self._lock:
            waiting = self._waiting.get(sha256)
            if waiting is not None:
                return open(waiting[0], "rb")
        return self.store.open(sha256)

    def size(self, sha256: str) -> int:
        with self._lock:
            waiting = self._waiting.get(sha256)
        return waiting[1] if waiting else self.store.size(sha256)

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)

    @property
    def waiting_bytes(self) -> int:
        with self._lock:
            return sum(size for _, size in self._waiting.values())

    def _finish_direct_writes(self) -> None:
        """Wait until the files direct writers finished in the background are complete; raises their errors."""
        with self._lock:
            staging = list(self._staging)
        for buffer in staging:
            buffer.wait()

    def commit(self) -> None:
        with self._lock:
            taken, self._waiting = self._waiting, {}
        if not taken:
            return
        try:
            self._finish_direct_writes()
            sync_filesystem(self.store.tmp_dir)
        except OSError as exc:
            for tmp, _ in taken.values():
                tmp.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise _disk_full(self.store.root) from exc
            raise
        # Renames (and the folders they need) are file-system calls with waiting in them: overlap them.
        with ThreadPoolExecutor(max_workers=PLACE_THREADS, thread_name_prefix="blob-place") as pool:
            list(pool.map(lambda item: self.store.place(item[0], item[1][0]), taken.items()))
        sync_filesystem(self.store.root)

    def abort(self) -> None:
        with self._lock:
            taken, self._waiting = self._waiting, {}
            staging, self._staging = self._staging, []
        for tmp, _ in taken.values():
            tmp.unlink(missing_ok=True)
        for buffer in staging:
            buffer.close()

    def __enter__(self) -> BlobBatch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()


# Where a writer of blobs puts them: straight into the store, or into a batch.
BlobSink = BlobStore | BlobBatch
