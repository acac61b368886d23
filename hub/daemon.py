"""`reservoir hub run`: sync and export on the schedule in reservoir.toml.

    [schedule]
    sync = "0 2 * * *"          # crontab (UTC), or "@every 6h"
    export = "0 3 * * 0"
    export_dir = "/media/outbox" # default: the home's outbox/
    export_chunk_size = "4G"

The job functions are module-level so APScheduler's database job store can
name them; each opens its own context, so a job survives the daemon's
restarts and never shares a database connection across threads.
"""

from __future__ import annotations

import logging
from pathlib import Path

from reservoir.context import AppContext
from reservoir.errors import ReservoirError
from reservoir.schedule import JobSpec, job_lock

log = logging.getLogger(__name__)
HUB_JOBS = {"sync": "hub.daemon:scheduled_sync", "export": "hub.daemon:scheduled_export"}


def scheduled_sync(home_root: str) -> None:
    from hub.sync import channel_names, sync_channel

    app = AppContext(home_root=Path(home_root))
    try:
        with job_lock(app.home.tmp_dir, "scheduled-sync"):
            for name in channel_names(app, []):
                try:
                    report = sync_channel(app, name)
                    log.warning("scheduled sync of %s: %s", name, report)
                except ReservoirError as exc:
                    log.error("scheduled sync of %s failed: %s", name, exc)
    except ReservoirError as exc:
        log.error("scheduled sync: %s", exc)
    finally:
        app.close()


def scheduled_export(home_root: str, out_dir: str, chunk_size: int) -> None:
    from transferer.export import export_bundle

    app = AppContext(home_root=Path(home_root))
    try:
        with job_lock(app.home.tmp_dir, "scheduled-export"):
            result = export_bundle(app, Path(out_dir), chunk_size=chunk_size)
            if result.path is None:
                log.warning("scheduled export: nothing new since bundle %d", result.seq)
            else:
                log.warning("scheduled export: wrote bundle %d to %s", result.seq, result.path)
    except ReservoirError as exc:
        log.error("scheduled export: %s", exc)
    finally:
        app.close()


def hub_job_specs(app: AppContext) -> list[JobSpec]:
    from transferer.format import parse_size

    schedule = app.home.section("schedule")
    root = str(app.home.root)
    specs = []
    if schedule.get("sync"):
        specs.append(JobSpec("sync", HUB_JOBS["sync"], str(schedule["sync"]), (root,)))
    if schedule.get("export"):
        out_dir = str(schedule.get("export_dir") or app.home.outbox_dir)
        chunk = parse_size(str(schedule.get("export_chunk_size", "4G")))
        specs.append(JobSpec("export", HUB_JOBS["export"], str(schedule["export"]), (root, out_dir, chunk)))
    return specs
