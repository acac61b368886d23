"""DirectFile: exact bytes around the page cache, and the page cache where the device says no."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from reservoir import directio
from reservoir.directio import ALIGN, DirectFile, StagingBuffer


def write_in_pieces(path: Path, data: bytes, piece: int, staging: StagingBuffer | None = None) -> DirectFile:
    f = DirectFile.create(path, staging)
    for start in range(0, len(data), piece):
        f.write(data[start : start + piece])
    assert f.close() == len(data)
    return f


@pytest.mark.parametrize(
    "size", [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, 3 * ALIGN + 17, (64 << 10) - 1, (1 << 20) + 5, 2 * (1 << 20)]
)
@pytest.mark.parametrize("piece", [1000, 4096, 1 << 20])
def test_the_file_holds_exactly_what_was_written(tmp_path: Path, size: int, piece: int) -> None:
    data = os.urandom(size)
    staging = StagingBuffer(1 << 20)  # smaller than the default, so large writes cross it
    path = tmp_path / "f"
    write_in_pieces(path, data, piece or 1, staging)
    assert path.read_bytes() == data
    assert path.stat().st_size == size


def test_o_direct_is_used_where_the_filesystem_takes_it(tmp_path: Path) -> None:
    f = DirectFile.create(tmp_path / "f")
    f.write(b"x" * 10)
    f.close()
    # ext4, xfs and (since Linux 6.6) tmpfs take O_DIRECT; the point is that the flag is really on.
    assert f.direct is hasattr(os, "O_DIRECT")


def test_a_refused_flag_writes_through_the_page_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(directio, "try_direct", lambda fd: False)
    data = os.urandom(3 * ALIGN + 5)
    f = write_in_pieces(tmp_path / "f", data, 1000)
    assert not f.direct
    assert (tmp_path / "f").read_bytes() == data


def test_a_write_the_device_refuses_falls_back_without_losing_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    refused = []

    def write_refusing_once(fd: int, data: memoryview) -> int:
        if not refused:
            refused.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(directio.os, "write", write_refusing_once)
    data = os.urandom((1 << 20) * 2 + 123)
    f = write_in_pieces(tmp_path / "f", data, 1 << 16, StagingBuffer(1 << 20))
    assert refused and not f.direct
    assert (tmp_path / "f").read_bytes() == data


def test_a_short_direct_write_is_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    monkeypatch.setattr(directio.os, "write", lambda fd, data: real_write(fd, data[: len(data) // 2]))
    f = DirectFile.create(tmp_path / "f", StagingBuffer(ALIGN * 4))
    if not f.direct:
        pytest.skip("no O_DIRECT here")
    with pytest.raises(OSError) as caught:
        f.write(b"y" * ALIGN * 4)  # a full half: written on the staging thread
        f.flush()  # where its error surfaces
    assert caught.value.errno == errno.ENOSPC
    f.abandon()


def test_writing_after_a_flush_continues_at_the_true_end(tmp_path: Path) -> None:
    f = DirectFile.create(tmp_path / "f", StagingBuffer(ALIGN * 2))
    f.write(b"a" * 100)
    f.flush()
    f.write(b"b" * (ALIGN * 5))
    f.close()
    assert (tmp_path / "f").read_bytes() == b"a" * 100 + b"b" * (ALIGN * 5)


def test_abandon_drops_what_is_staged(tmp_path: Path) -> None:
    f = DirectFile.create(tmp_path / "f")
    f.write(b"z" * 100)
    f.abandon()
    assert (tmp_path / "f").stat().st_size == (0 if f.direct else 100)


def test_files_finished_in_the_background_are_complete_after_a_wait(tmp_path: Path) -> None:
    staging = StagingBuffer(ALIGN * 4)
    contents = [os.urandom(n) for n in (10, ALIGN * 4, ALIGN * 9 + 3, 0, ALIGN * 4 + 1)]
    for i, data in enumerate(contents):
        f = DirectFile.create(tmp_path / f"f{i}", staging)
        f.write(data)
        f.close_later()  # the next file's halves wait for this one's tail
    staging.wait()
    for i, data in enumerate(contents):
        assert (tmp_path / f"f{i}").read_bytes() == data
    staging.close()


def test_a_background_failure_surfaces_from_the_next_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staging = StagingBuffer(ALIGN * 4)
    f = DirectFile.create(tmp_path / "f", staging)
    if not f.direct:
        pytest.skip("no O_DIRECT here")
    f.write(b"q" * 100)
    real_write = os.write
    monkeypatch.setattr(directio.os, "write", lambda fd, data: real_write(fd, data[: len(data) // 2]))
    f.close_later()
    with pytest.raises(OSError) as caught:
        staging.wait()
    assert caught.value.errno == errno.ENOSPC
    staging.close()


def test_in_page_cache_tells_resident_ranges_without_reading(tmp_path: Path) -> None:
    import subprocess

    from reservoir.directio import in_page_cache

    path = tmp_path / "f"
    path.write_bytes(os.urandom(ALIGN * 64))
    fd = os.open(path, os.O_RDONLY)
    try:
        assert in_page_cache(fd, 0, ALIGN * 64)  # just written: every page resident
        assert not in_page_cache(fd, 1, ALIGN)  # an unaligned offset: cannot tell
        assert not in_page_cache(fd, 0, 0)
        if subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True, text=True, check=False).stdout.strip() != "tmpfs":
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            assert not in_page_cache(fd, 0, ALIGN * 64)
            assert not in_page_cache(fd, 0, ALIGN * 64)  # asking read nothing in
    finally:
        os.close(fd)
