"""Package files answered from memory.

A package file never changes under its path (its folder is its sha256),
so once read it can be answered from memory for as long as its generation
is live, with headers computed once: no stat, no open and no thread hand-off
per request, which is where aiohttp's ``FileResponse`` spends its time.
Bounded per worker by file size and total bytes (LRU); larger files and
requests with Range or conditional headers take the regular path.
"""

from __future__ import annotations

import math
import os
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from restorer.wire import header_block

# The same type, ETag and Last-Modified that FileResponse sends for the file,
# so a client's conditional request on the regular path matches.
CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class Validators:
    etag: str
    last_modified: str
    mtime_s: int  # Last-Modified in seconds


def validators(st: os.stat_result) -> Validators:
    """The ETag and Last-Modified that FileResponse sends for a file: the cache and the conditional path use these."""
    mtime_s = math.ceil(st.st_mtime)  # rounded up to the second, as aiohttp's own Last-Modified is
    last_modified = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(mtime_s))
    return Validators(f'"{st.st_mtime_ns:x}-{st.st_size:x}"', last_modified, mtime_s)


@dataclass(frozen=True)
class CachedFile:
    body: bytes
    headers: dict[str, str]
    wire: bytes  # `headers` and Content-Length, encoded for the fast path


@dataclass
class FileCache:
    max_file_bytes: int = 4 << 20
    capacity_bytes: int = 256 << 20
    _entries: OrderedDict[str, CachedFile] = field(default_factory=OrderedDict)
    _bytes: int = 0
    _generation: str = ""

    def get(self, generation: Path, relative: str, extra_headers: dict[str, str]) -> CachedFile | None:
        """The file at `generation/relative`, or None when it is missing, not a file or too large to keep."""
        if generation.name != self._generation:
            self._entries.clear()
            self._bytes = 0
            self._generation = generation.name
        entry = self._entries.get(relative)
        if entry is not None:
            self._entries.move_to_end(relative)
            return entry
        try:
            with open(generation / relative, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode) or st.st_size > self.max_file_bytes:
                    return None
                body = f.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        if len(body) != st.st_size:  # changed while read: let the regular path answer
            return None
        valid = validators(st)
        headers = {
            "Content-Type": CONTENT_TYPE,
            "ETag": valid.etag,
            "Last-Modified": valid.last_modified,
            "Accept-Ranges": "bytes",
            **extra_headers,
        }
        entry = CachedFile(body, headers, header_block(headers, len(body)))
        self._entries[relative] = entry
        self._bytes += len(body)
        while self._bytes > self.capacity_bytes and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.body)
        return entry
