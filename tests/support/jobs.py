"""Job functions the scheduler tests install (APScheduler stores them by name)."""

from __future__ import annotations

import time
from pathlib import Path

from reservoir.schedule import job_lock


def record_run(log_path: str, seconds: float = 0.0) -> None:
    """Append this run's start and end times; hold the job lock meanwhile."""
    path = Path(log_path)
    with job_lock(path.parent, "record-run"):
        start = time.time()
        time.sleep(seconds)
        with open(path, "a") as f:
            f.write(f"{start} {time.time()}\n")
