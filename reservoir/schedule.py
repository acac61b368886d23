"""Periodic jobs for the daemons (`hub run`, the site's inbox watcher), on APScheduler.

Jobs live in APScheduler's SQLAlchemy job store inside our own database, so
a restarted daemon finds them: a run that fell due while it was down runs
once when it comes back (coalesced, within the grace time), and a job is
only replaced when its schedule changed. ``max_instances=1`` keeps a run
that is still going from being started again; jobs additionally take a
file lock (``job_lock``) so that a manual command and a scheduled run never
overlap either.
"""

from __future__ import annotations

import fcntl
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from reservoir.errors import ConfigError, ReservoirError

log = logging.getLogger(__name__)
JOB_TABLE = "apscheduler_jobs"
EVERY_RE = re.compile(r"^@every\s+(\d+)\s*([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
MISFIRE_GRACE_S = 6 * 3600


@dataclass(frozen=True)
class JobSpec:
    job_id: str
    func_ref: str  # "module:function", importable by the daemon
    schedule: str  # crontab "0 2 * * *" or "@every 30m"
    args: tuple[Any, ...] = ()


def parse_trigger(schedule: str, what: str) -> BaseTrigger:
    text = schedule.strip()
    match = EVERY_RE.match(text)
    if match:
        return IntervalTrigger(**{UNITS[match.group(2)]: int(match.group(1))}, timezone="UTC")
    try:
        return CronTrigger.from_crontab(text, timezone="UTC")
    except ValueError as exc:
        raise ConfigError(f"[schedule] {what}: {schedule!r} is neither a crontab line nor '@every N[smhd]' ({exc})") from exc


def make_scheduler(cls: type[BaseScheduler], db_url: str) -> BaseScheduler:
    return cls(
        jobstores={"default": SQLAlchemyJobStore(url=db_url, tablename=JOB_TABLE)},
        executors={"default": ThreadPoolExecutor(4)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_S},
        timezone="UTC",
    )


def install_jobs(scheduler: BaseScheduler, specs: list[JobSpec], managed_ids: set[str]) -> None:
    """Make the store hold exactly `specs` among `managed_ids`, keeping unchanged jobs as stored.

    Keeping a stored job (rather than replacing it) keeps its next run time,
    so a run missed while the daemon was down is not lost.
    """
    wanted = {spec.job_id: spec for spec in specs}
    for job_id in managed_ids - set(wanted):
        if scheduler.get_job(job_id) is not None:
            scheduler.remove_job(job_id)
    for spec in specs:
        trigger = parse_trigger(spec.schedule, spec.job_id)
        existing = scheduler.get_job(spec.job_id)
        if (
            existing is not None
            and str(existing.trigger) == str(trigger)
            and existing.func_ref == spec.func_ref
            and tuple(existing.args) == spec.args
        ):
            continue
        scheduler.add_job(spec.func_ref, trigger=trigger, args=spec.args, id=spec.job_id, replace_existing=True)


@contextmanager
def job_lock(lock_dir: Path, name: str) -> Iterator[None]:
    """Refuse to run `name` while another process runs it (a file lock: dies with its holder)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ReservoirError(f"{name} is already running", hint="wait for it to finish") from None
        yield


def next_runs(scheduler: BaseScheduler) -> dict[str, str]:
    return {job.id: str(job.next_run_time) for job in scheduler.get_jobs()}

