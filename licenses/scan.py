"""Scancode detection of license files through one long-lived worker, cached by sha256.

Loading scancode's license index costs seconds, so one worker process
(`python -m licenses.scan_worker`) keeps it loaded and scans file after
file. A file that takes longer than the per-file timeout kills the worker
(scancode cannot be interrupted in-process); it is recorded as a timeout and
a fresh worker takes the next file. Every result, timeouts included, is
cached by (sha256, scancode version): no file content is scanned twice.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select as sql_select
from sqlalchemy.orm import Session

from licenses.models import LicenseScan
from reservoir.errors import ReservoirError

log = logging.getLogger(__name__)

DEFAULT_FILE_TIMEOUT_S = 30.0
# The index load can build scancode's cache on first use (a minute or more).
STARTUP_TIMEOUT_S = 600.0


class ScannerUnavailable(ReservoirError):
    pass


@dataclass
class ScanWorker:
    """A scancode subprocess speaking JSON lines; restarted after a timeout."""

    file_timeout_s: float = DEFAULT_FILE_TIMEOUT_S
    _proc: subprocess.Popen[str] | None = field(default=None, init=False)
    version: str = field(default="", init=False)
    scanned: int = field(default=0, init=False)

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "licenses.scan_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, bufsize=1,
        )
        hello = self._read_line(STARTUP_TIMEOUT_S)
        if hello is None or not hello.get("ready"):
            self.stop()
            raise ScannerUnavailable(
                "scancode worker did not start", hint="install scancode-toolkit (pip install -e '.[licenses]')"
            )
        self.version = str(hello["version"])

    def scan(self, path: Path) -> dict[str, Any]:
        """Scancode's compact answer for one file, or {"timeout": true} / {"error": ...}."""
        self.start()
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"path": str(path)}) + "\n")
        self._proc.stdin.flush()
        answer = self._read_line(self.file_timeout_s)
        self.scanned += 1
        if answer is None:
            log.warning("scancode timed out on %s after %.0f s; restarting the worker", path, self.file_timeout_s)
            self.stop()
            return {"timeout": True, "expression": None, "matches": []}
        answer.pop("path", None)
        return answer

    def _read_line(self, timeout_s: float) -> dict[str, Any] | None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout: IO[str] = self._proc.stdout
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([stdout], [], [], left)
            if ready:
                line = stdout.readline()
                if not line:
                    return None  # the worker died
                return dict(json.loads(line))

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()
        self._proc = None

    def __enter__(self) -> ScanWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def scancode_version() -> str:
    """The installed scancode version without loading it (the cache key)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scancode-toolkit")
    except PackageNotFoundError as exc:
        raise ScannerUnavailable("scancode-toolkit is not installed", hint="pip install scancode-toolkit") from exc


def cached_results(session: Session, digests: Iterable[str], scanner_version: str) -> dict[str, dict[str, Any]]:
    wanted = list(set(digests))
    found: dict[str, dict[str, Any]] = {}
    for chunk_start in range(0, len(wanted), 500):
        chunk = wanted[chunk_start:chunk_start + 500]
        rows = session.execute(
            sql_select(LicenseScan.file_sha256, LicenseScan.result)
            .where(LicenseScan.scanner_version == scanner_version, LicenseScan.file_sha256.in_(chunk))
        )
        found.update({digest: result for digest, result in rows})
    return found


def scan_files(
    session: Session, worker: ScanWorker, files: dict[str, Path], scanner_version: str
) -> dict[str, dict[str, Any]]:
    """Results for {sha256: path}: cached ones read, the others scanned once and cached."""
    results = cached_results(session, files, scanner_version)
    for digest, path in files.items():
        if digest in results:
            continue
        result = worker.scan(path)
        session.add(LicenseScan(file_sha256=digest, scanner_version=scanner_version, result=result))
        results[digest] = result
    session.flush()
    return results


def worker_from_env() -> ScanWorker:
    timeout = float(os.environ.get("RESERVOIR_SCAN_TIMEOUT_S", DEFAULT_FILE_TIMEOUT_S))
    return ScanWorker(file_timeout_s=timeout)
