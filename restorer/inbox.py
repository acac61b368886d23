"""The watched inbox: import each bundle folder that lands there.

Polled, not inotify: removable media and NFS do not deliver events. A
bundle is taken only once its manifest, signature, table of contents and
every part are present at their final sizes; until then it waits and is
reported as waiting. Bundles are taken in sequence order; one whose
predecessors have not arrived waits for them. Imported bundles move to
``done/``; refused ones to ``failed/`` with a one-line ``REASON.txt``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reservoir.context import AppContext
from reservoir.errors import ReservoirError
from reservoir.blobs import DiskFull
from restorer.importer import (
    SETTLE_S,
    BundleIncomplete,
    NotABundle,
    SequenceGap,
    import_bundle,
    move_bundle,
    read_signed_manifest,
)
from transferer.format import MANIFEST

log = logging.getLogger(__name__)
DONE = "done"
FAILED = "failed"
REASON = "REASON.txt"
Status = Literal["imported", "already", "waiting", "failed"]


@dataclass(frozen=True)
class InboxResult:
    bundle: str
    status: Status
    message: str

    def __str__(self) -> str:
        return f"{self.status}: {self.bundle}: {self.message}"


def _candidates(inbox: Path) -> list[Path]:
    if not inbox.is_dir():
        raise ReservoirError(f"inbox {inbox} does not exist", hint="create it or pass the right folder")
    return [p for p in inbox.iterdir() if p.is_dir() and p.name not in (DONE, FAILED) and not p.name.startswith(".")]


def _recently_modified(folder: Path, settle_s: float) -> bool:
    cutoff = time.time() - settle_s
    return any(p.stat().st_mtime > cutoff for p in folder.iterdir() if p.is_file())


def _order(app: AppContext, folders: list[Path]) -> list[Path]:
    """Sequence order where the manifest can be read; unreadable ones last (they will fail or wait)."""

    def key(folder: Path) -> tuple[int, str, int, str]:
        try:
            manifest = read_signed_manifest(folder, app).manifest
        except ReservoirError:
            return (1, "", 0, folder.name)
        return (0, manifest.hub_id, manifest.seq, folder.name)

    return sorted(folders, key=key)


def scheduled_scan(home_root: str) -> None:
    """The serve daemon's watcher job (APScheduler names it by this module path)."""
    from reservoir.schedule import job_lock

    app = AppContext(home_root=Path(home_root))
    try:
        with job_lock(app.home.tmp_dir, "inbox-scan"):
            for result in scan_inbox(app, app.home.inbox_dir):
                log.warning("inbox: %s", result)
    except ReservoirError as exc:
        log.error("inbox: %s", exc)
    finally:
        app.close()


def scan_inbox(app: AppContext, inbox: Path, *, settle_s: float = SETTLE_S) -> list[InboxResult]:
    """One pass over the inbox; returns what happened to each bundle folder."""
    results = []
    for folder in _order(app, _candidates(inbox)):
        if not (folder / MANIFEST).exists():
            results.append(InboxResult(folder.name, "waiting", f"no {MANIFEST} yet"))
            continue
        try:
            outcome = import_bundle(app, folder, settle_s=settle_s)
        except (BundleIncomplete, NotABundle, SequenceGap) as exc:
            results.append(InboxResult(folder.name, "waiting", str(exc)))
            continue
        except DiskFull as exc:
            # Not the bundle's fault: leave it where it is for the next try.
            results.append(InboxResult(folder.name, "waiting", str(exc)))
            continue
        except ReservoirError as exc:
            if _recently_modified(folder, settle_s):
                results.append(InboxResult(folder.name, "waiting", f"still being copied? ({exc})"))
                continue
            dest = move_bundle(folder, inbox / FAILED)
            (dest / REASON).write_text(str(exc) + "\n")
            results.append(InboxResult(folder.name, "failed", str(exc)))
            continue
        move_bundle(folder, inbox / DONE)
        results.append(InboxResult(folder.name, outcome.status, outcome.describe()))
    return results
