from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reservoir.blobs import BlobStore
from reservoir.errors import IntegrityError


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put_bytes_is_content_addressed(blob_store: BlobStore) -> None:
    sha = blob_store.put_bytes(b"hello")
    assert sha == digest(b"hello")
    assert blob_store.path(sha).read_bytes() == b"hello"
    assert blob_store.path(sha).relative_to(blob_store.root).parts[:2] == (sha[:2], sha[2:4])


def test_same_content_is_stored_once(blob_store: BlobStore) -> None:
    a = blob_store.put_bytes(b"same")
    b = blob_store.put_bytes(b"same")
    assert a == b
    assert list(blob_store.iter_digests()) == [a]


def test_hash_mismatch_discards_the_bytes(blob_store: BlobStore) -> None:
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        blob_store.put_bytes(b"evil", expected_sha256=digest(b"good"))
    assert list(blob_store.iter_digests()) == []
    assert list(blob_store.tmp_dir.iterdir()) == []


def test_size_mismatch_discards_the_bytes(blob_store: BlobStore) -> None:
    with blob_store.writer(expected_size=10) as w:
        w.write(b"short")
        with pytest.raises(IntegrityError, match="size mismatch"):
            w.commit()
    assert list(blob_store.iter_digests()) == []


def test_exception_while_writing_leaves_nothing(blob_store: BlobStore) -> None:
    with pytest.raises(RuntimeError):
        with blob_store.writer() as w:
            w.write(b"partial")
            raise RuntimeError("network dropped")
    assert list(blob_store.iter_digests()) == []
    assert list(blob_store.tmp_dir.iterdir()) == []


def test_verify_detects_corruption(blob_store: BlobStore) -> None:
    sha = blob_store.put_bytes(b"payload")
    assert blob_store.verify(sha)
    path = blob_store.path(sha)
    os.chmod(path, 0o644)
    path.write_bytes(b"paylaod")
    assert not blob_store.verify(sha)
    assert not blob_store.verify(digest(b"absent"))


def test_malformed_digest_is_refused(blob_store: BlobStore) -> None:
    with pytest.raises(IntegrityError, match="not a sha256"):
        blob_store.path("../../etc/passwd")


def test_link_into_shares_the_inode(blob_store: BlobStore, tmp_path: Path) -> None:
    sha = blob_store.put_bytes(b"wheel bytes")
    dest = tmp_path / "tree" / "pkg.whl"
    blob_store.link_into(sha, dest)
    assert dest.read_bytes() == b"wheel bytes"
    assert dest.stat().st_ino == blob_store.path(sha).stat().st_ino


def test_kill_during_write_leaves_no_visible_blob(tmp_path: Path) -> None:
    """SIGKILL a writer mid-stream: no blob appears, and a stale temporary is cleaned."""
    root = tmp_path / "blobs"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from reservoir.blobs import BlobStore
        store = BlobStore(Path({str(root)!r}))
        w = store.writer()
        w.write(b"x" * 1024)
        print("writing", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    store = BlobStore(root)
    assert list(store.iter_digests()) == []
    assert len(list(store.tmp_dir.iterdir())) == 1
    assert store.clean_stale_temporaries(older_than_s=0) == 1
    assert list(store.tmp_dir.iterdir()) == []


def _batch_write(batch, data: bytes, expected: str | None = None) -> str:  # type: ignore[no-untyped-def]
    with batch.writer(expected, len(data) if expected else None) as w:
        w.write(data)
        return w.commit()


def test_a_batch_shows_its_blobs_only_once_committed(blob_store: BlobStore) -> None:
    with blob_store.batch() as batch:
        first = _batch_write(batch, b"one")
        second = _batch_write(batch, b"two")
        _batch_write(batch, b"one")  # the same content twice in a batch is stored once
        assert not blob_store.has(first) and not blob_store.has(second)
        assert len(batch) == 2
        batch.commit()
    assert blob_store.path(first).read_bytes() == b"one"
    assert sorted(blob_store.iter_digests()) == sorted([first, second])
    assert list(blob_store.tmp_dir.iterdir()) == []


def test_a_batch_left_by_an_error_stores_nothing(blob_store: BlobStore) -> None:
    kept = blob_store.put_bytes(b"already here")
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        with blob_store.batch() as batch:
            _batch_write(batch, b"fine")
            _batch_write(batch, b"evil", expected=digest(b"good"))
            batch.commit()
    assert list(blob_store.iter_digests()) == [kept]
    assert list(blob_store.tmp_dir.iterdir()) == []


def test_a_batch_never_committed_stores_nothing(blob_store: BlobStore) -> None:
    with blob_store.batch() as batch:
        _batch_write(batch, b"forgotten")
    assert list(blob_store.iter_digests()) == []
    assert list(blob_store.tmp_dir.iterdir()) == []


def test_a_batch_reads_its_waiting_blobs(blob_store: BlobStore) -> None:
    with blob_store.batch() as batch:
        sha = batch.put_bytes(b"waiting")
        assert batch.has(sha) and not blob_store.has(sha) and batch.size(sha) == 7
        with batch.open(sha) as waiting:
            batch.commit()  # a rename under an open file: the reader keeps its bytes
            assert waiting.read() == b"waiting"
        with batch.open(sha) as stored:
            assert stored.read() == b"waiting"
    assert blob_store.has(sha)


def test_direct_writers_in_a_batch_verify_and_share_one_staging_buffer(blob_store: BlobStore) -> None:
    large = os.urandom((5 << 20) + 7)  # more than one staging buffer, and an unaligned tail
    with blob_store.batch() as batch:
        with batch.writer(digest(large), len(large), direct=True) as w:
            w.write(large[:3000])
            w.write(memoryview(large)[3000:])
            w.commit()
        with pytest.raises(IntegrityError, match="sha256 mismatch"), batch.writer(digest(b"good"), direct=True) as bad:
            bad.write(b"evil")
            bad.commit()
        assert len(batch._staging) == 1  # both writers used, and gave back, the same buffer
        batch.commit()
    assert blob_store.path(digest(large)).read_bytes() == large
    assert list(blob_store.iter_digests()) == [digest(large)]
    assert list(blob_store.tmp_dir.iterdir()) == []
