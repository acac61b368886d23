"""APT `Packages` files whose compressed forms cost the change, not the index.

A `Packages` file is its stanzas sorted by package, cut into chunks where a
package name's hash says so (content-defined: adding or removing a package
changes its own chunk, never where the others are cut). Each chunk is
compressed once and kept by the sha256 of its text:

- `Packages.gz` is the chunks' gzip members one after the other, which
  gzip, zlib and apt read as one file (RFC 1952 allows several members);
- `Packages.xz` is one xz stream whose blocks are the chunks' blocks: apt
  reads only the first stream of a file, so the streams xz would write per
  chunk are taken apart and their blocks put in one stream with a new index.

A republish after a small change recompresses a few chunks and hashes the
whole files (three digests at disk speed), where reprepro or aptly recompress
the whole index.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import struct
import uuid
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# A chunk ends after a package whose name hashes to 0 modulo this: 48 packages on average.
CHUNK_SPREAD = 48
XZ_PRESET = 6
XZ_DICT = 1 << 20
COMPRESS_THREADS = max(1, min(4, os.cpu_count() or 1))
GZIP_LEVEL = 9
_XZ_MAGIC = b"\xfd7zXZ\x00"
_XZ_FOOTER_MAGIC = b"YZ"
_CHECK = lzma.CHECK_CRC64
_FLAGS = bytes([0, _CHECK])


@dataclass(frozen=True)
class Digests:
    size: int
    md5: str
    sha256: str

    def to_json(self) -> list[object]:
        return [self.size, self.md5, self.sha256]


def digests(data: bytes) -> Digests:
    return Digests(len(data), hashlib.md5(data, usedforsecurity=False).hexdigest(), hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class CompressedChunk:
    gz: bytes  # one gzip member
    xz_block: bytes  # one xz block, padded, with its check
    xz_unpadded: int  # the block's unpadded size, as the xz index records it
    size: int  # uncompressed


def cut_chunks(stanzas: Sequence[tuple[str, bytes]]) -> list[bytes]:
    """(package name, stanza text ending in a blank line) in index order -> the chunks' texts."""
    chunks: list[bytes] = []
    current: list[bytes] = []
    for i, (name, stanza) in enumerate(stanzas):
        current.append(stanza)
        last_of_name = i + 1 == len(stanzas) or stanzas[i + 1][0] != name
        if last_of_name and int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % CHUNK_SPREAD == 0:
            chunks.append(b"".join(current))
            current = []
    if current:
        chunks.append(b"".join(current))
    return chunks


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def compress_chunk(text: bytes) -> CompressedChunk:
    """A chunk's gzip member and its xz block (taken out of the one-block stream xz writes)."""
    gz = gzip.compress(text, compresslevel=GZIP_LEVEL, mtime=0)
    # A chunk is tens of KiB: preset 6's 8 MiB dictionary would only cost its set-up on every chunk.
    filters = [{"id": lzma.FILTER_LZMA2, "preset": XZ_PRESET, "dict_size": XZ_DICT}]
    stream = lzma.compress(text, format=lzma.FORMAT_XZ, check=_CHECK, filters=filters)
    backward = struct.unpack("<I", stream[-8:-4])[0]
    index_size = (backward + 1) * 4
    index_start = len(stream) - 12 - index_size
    index = stream[index_start : len(stream) - 12]
    records, pos = _read_varint(index, 1)
    if index[0] != 0 or records != 1:
        raise ValueError(f"xz wrote {records} blocks for one chunk")
    unpadded, pos = _read_varint(index, pos)
    uncompressed, _ = _read_varint(index, pos)
    if uncompressed != len(text):
        raise ValueError("xz index disagrees with the chunk's size")
    return CompressedChunk(gz, stream[12:index_start], unpadded, len(text))


def xz_stream(chunks: Iterable[CompressedChunk]) -> bytes:
    """One xz stream of the chunks' blocks, in order (xz's file format 1.0.4: header, blocks, index, footer)."""
    parts = [_XZ_MAGIC, _FLAGS, struct.pack("<I", zlib.crc32(_FLAGS))]
    records = []
    for chunk in chunks:
        parts.append(chunk.xz_block)
        records.append(_varint(chunk.xz_unpadded) + _varint(chunk.size))
    index = b"\x00" + _varint(len(records)) + b"".join(records)
    index += b"\x00" * (-len(index) % 4)
    index += struct.pack("<I", zlib.crc32(index))
    backward = struct.pack("<I", len(index) // 4 - 1)
    parts += [index, struct.pack("<I", zlib.crc32(backward + _FLAGS)), backward, _FLAGS, _XZ_FOOTER_MAGIC]
    return b"".join(parts)


@dataclass
class ChunkCache:
    """Compressed chunks by the sha256 of their text: in memory for one publish, on disk across publishes."""

    folder: Path | None = None
    memory: dict[str, CompressedChunk] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    compressed: int = 0  # chunks compressed by this cache (not found)

    def get_all(self, texts: Sequence[bytes]) -> list[CompressedChunk]:
        """Each text's chunk; those not kept yet are compressed on threads (zlib and lzma let go of the GIL)."""
        keys = [hashlib.sha256(text).hexdigest() for text in texts]
        self.used.update(keys)
        found: dict[str, CompressedChunk | None] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in found:
                found[key] = self.memory.get(key) or self._load(key, len(text))
        missing = {key: text for key, text in zip(keys, texts, strict=True) if found[key] is None}
        if missing:
            with ThreadPoolExecutor(max_workers=COMPRESS_THREADS, thread_name_prefix="apt-xz") as pool:
                made = dict(zip(missing, pool.map(compress_chunk, missing.values()), strict=True))
            for key, chunk in made.items():
                self._save(key, chunk)
                found[key] = chunk
            self.compressed += len(made)
        for key, chunk in found.items():
            assert chunk is not None
            self.memory[key] = chunk
        return [self.memory[key] for key in keys]

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / key[:2] / key

    def _load(self, key: str, size: int) -> CompressedChunk | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        if len(raw) < 16:
            return None
        gz_len, unpadded = struct.unpack("<QQ", raw[:16])
        return CompressedChunk(raw[16 : 16 + gz_len], raw[16 + gz_len :], unpadded, size)

    def _save(self, key: str, chunk: CompressedChunk) -> None:
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".tmp-{uuid.uuid4().hex[:8]}"
        tmp.write_bytes(struct.pack("<QQ", len(chunk.gz), chunk.xz_unpadded) + chunk.gz + chunk.xz_block)
        os.replace(tmp, path)

    def sweep(self) -> None:
        """Drop every chunk this cache did not use (after a full publish, which used all live ones)."""
        if self.folder is None or not self.folder.is_dir():
            return
        for sub in self.folder.iterdir():
            for path in sub.iterdir():
                if path.name not in self.used:
                    path.unlink(missing_ok=True)


@dataclass(frozen=True)
class IndexFiles:
    plain: bytes
    gz: bytes
    xz: bytes


def render_index(stanzas: Sequence[tuple[str, bytes]], cache: ChunkCache) -> IndexFiles:
    chunks = cut_chunks(stanzas)
    compressed = cache.get_all(chunks)
    return IndexFiles(b"".join(chunks), b"".join(c.gz for c in compressed), xz_stream(compressed))
