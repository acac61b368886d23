"""PartWriter and PartReader on their own: any cut of the stream reads back exactly, and damage is named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from transferer.format import BundleError, PartRef, Toc
from transferer.payload import BUFFER, PartReader, PartWriter


def write_stream(folder: Path, data: bytes, part_size: int, piece: int) -> Toc:
    writer = PartWriter(folder, part_size)
    for start in range(0, len(data), piece):
        writer.write(data[start : start + piece])
    return writer.close()


def read_back(folder: Path, toc: Toc, sizes: list[int]) -> bytes:
    reader = PartReader(folder, toc)
    out = bytearray()
    try:
        turn = 0
        while True:
            n = sizes[turn % len(sizes)]
            turn += 1
            piece = reader.read_some(n) if turn % 2 else reader.read(n)
            if not piece:
                break
            out += piece
        reader.finish()
    finally:
        reader.close()
    return bytes(out)


@pytest.mark.parametrize(
    ("size", "part_size"),
    [(0, 1 << 20), (1, 1 << 20), (BUFFER * 3 + 517, 1 << 30), (BUFFER * 2 + 3, BUFFER // 3), (5 << 20, (1 << 20) + 512)],
)
def test_the_stream_reads_back_across_parts_and_buffers(tmp_path: Path, size: int, part_size: int) -> None:
    data = os.urandom(size)
    toc = write_stream(tmp_path, data, part_size, piece=100_003)
    assert sum(p.size for p in toc.parts) == size
    assert all(p.size <= part_size for p in toc.parts)
    assert read_back(tmp_path, toc, [512, BUFFER, 7, 3 << 20]) == data


def test_a_corrupt_part_is_named_once_it_has_been_read(tmp_path: Path) -> None:
    data = os.urandom(BUFFER * 2)
    toc = write_stream(tmp_path, data, BUFFER, piece=1 << 20)
    second = tmp_path / toc.parts[1].name
    raw = bytearray(second.read_bytes())
    raw[12345] ^= 1
    second.write_bytes(raw)
    with pytest.raises(BundleError, match=f"part {toc.parts[1].name} is corrupt"):
        read_back(tmp_path, toc, [BUFFER])


def test_size_differences_are_caught_when_a_part_opens(tmp_path: Path) -> None:
    toc = write_stream(tmp_path, os.urandom(10_000), 4096, piece=10_000)
    first = tmp_path / toc.parts[0].name
    with first.open("ab") as f:
        f.write(b"x")
    with pytest.raises(BundleError, match="wrong size"):
        read_back(tmp_path, toc, [4096])
    first.write_bytes(first.read_bytes()[:100])
    with pytest.raises(BundleError, match="truncated"):
        read_back(tmp_path, toc, [4096])
    first.unlink()
    with pytest.raises(BundleError, match="missing"):
        read_back(tmp_path, toc, [4096])


def test_stopping_midway_closes_cleanly(tmp_path: Path) -> None:
    toc = write_stream(tmp_path, os.urandom(BUFFER * 4), BUFFER * 10, piece=BUFFER)
    reader = PartReader(tmp_path, toc)
    assert len(reader.read(100)) == 100  # reads are now in flight ahead
    reader.close()
    reader.close()  # twice is harmless


def test_a_toc_listing_a_part_that_is_not_there(tmp_path: Path) -> None:
    toc = Toc((PartRef("payload.tar.000", 10, "0" * 64),))
    with pytest.raises(BundleError, match="missing"):
        read_back(tmp_path, toc, [10])


def test_an_aborted_writer_leaves_no_threads_behind(tmp_path: Path) -> None:
    import threading

    before = {t.name for t in threading.enumerate()}
    writer = PartWriter(tmp_path, 1 << 30)
    writer.write(os.urandom(BUFFER * 3))  # halves handed to the write-behind thread, chunks to the hash thread
    writer.abort()
    left = {t.name for t in threading.enumerate() if t.is_alive()} - before
    assert not [name for name in left if name.startswith(("direct-write", "part-hash"))], left


def test_parts_in_the_page_cache_are_read_from_it_and_others_from_the_device(tmp_path: Path) -> None:
    import hashlib
    import subprocess

    data = os.urandom(BUFFER * 2 + 1000)
    part = tmp_path / "payload.tar.000"
    part.write_bytes(data)  # as `cp` into the inbox leaves it: in the page cache
    toc = Toc((PartRef(part.name, len(data), hashlib.sha256(data).hexdigest()),))
    reader = PartReader(tmp_path, toc)
    assert bytes(reader.read(len(data))) == data
    reader.finish()
    reader.close()
    assert reader.cached_bytes == len(data)
    if subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True, text=True, check=False).stdout.strip() == "tmpfs":
        return  # tmpfs is all page cache: nothing to evict
    with part.open("rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    reader = PartReader(tmp_path, toc)
    assert bytes(reader.read(len(data))) == data
    reader.finish()
    reader.close()
    assert reader.cached_bytes < len(data)
