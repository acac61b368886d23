"""`reservoir hub run` and the job store in our database: restarts neither lose nor double a run."""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import create_engine, text

from reservoir.schedule import JOB_TABLE, JobSpec, install_jobs, make_scheduler
from tests.support.bundles import add_to_hub, make_pair
from tests.support.site import wheel_named

RECORD = "tests.support.jobs:record_run"


def runs(log: Path) -> list[tuple[float, float]]:
    if not log.exists():
        return []
    return [tuple(map(float, line.split())) for line in log.read_text().splitlines()]  # type: ignore[misc]


def backdate_job(db_url: str, job_id: str, when: datetime) -> None:
    """Edit the stored job as if the daemon had been down since `when` (no scheduler running)."""
    engine = create_engine(db_url)
    with engine.begin() as conn:
        state = pickle.loads(conn.execute(text(f"SELECT job_state FROM {JOB_TABLE} WHERE id = :id"), {"id": job_id}).scalar_one())
        state["next_run_time"] = when
        conn.execute(
            text(f"UPDATE {JOB_TABLE} SET job_state = :state, next_run_time = :ts WHERE id = :id"),
            {"state": pickle.dumps(state, pickle.HIGHEST_PROTOCOL), "ts": when.timestamp(), "id": job_id},
        )
    engine.dispose()


def started(db_url: str) -> BackgroundScheduler:
    scheduler = make_scheduler(BackgroundScheduler, db_url)
    scheduler.start(paused=True)
    return scheduler  # type: ignore[return-value]


def test_restarts_keep_one_job_each_and_apply_changes(db_url: str, tmp_path: Path) -> None:
    log = str(tmp_path / "runs.log")
    specs = [JobSpec("sync", RECORD, "0 2 * * *", (log,)), JobSpec("export", RECORD, "0 3 * * 0", (log,))]
    first = started(db_url)
    install_jobs(first, specs, {"sync", "export"})
    next_sync = first.get_job("sync").next_run_time
    first.shutdown()
    second = started(db_url)
    install_jobs(second, specs, {"sync", "export"})
    assert sorted(j.id for j in second.get_jobs()) == ["export", "sync"]
    assert second.get_job("sync").next_run_time == next_sync
    install_jobs(second, [JobSpec("sync", RECORD, "30 4 * * *", (log,))], {"sync", "export"})
    assert [j.id for j in second.get_jobs()] == ["sync"]
    assert second.get_job("sync").next_run_time.hour == 4
    second.shutdown()


def test_a_run_missed_while_down_runs_once_after_restart(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    spec = JobSpec("sync", RECORD, "@every 1h", (str(log),))
    first = started(db_url)
    install_jobs(first, [spec], {"sync"})
    first.shutdown()
    backdate_job(db_url, "sync", datetime.now(timezone.utc) - timedelta(hours=3))  # down for three periods
    second = started(db_url)
    install_jobs(second, [spec], {"sync"})
    second.resume()
    deadline = time.monotonic() + 10
    while not runs(log) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    second.shutdown()
    assert len(runs(log)) == 1


def test_a_run_still_going_is_not_started_twice(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    scheduler = started(db_url)
    install_jobs(scheduler, [JobSpec("sync", RECORD, "@every 1s", (str(log), 2.5))], {"sync"})
    scheduler.resume()
    time.sleep(6.5)
    scheduler.shutdown(wait=True)
    recorded = sorted(runs(log))
    assert len(recorded) >= 2
    for (_, end), (next_start, _) in zip(recorded, recorded[1:]):
        assert next_start >= end, recorded


def test_hub_run_exports_on_schedule_and_stops_cleanly(tmp_path: Path, site_wheels: dict[str, Path]) -> None:
    pair = make_pair(tmp_path)
    add_to_hub(pair.hub, wheel_named(site_wheels, "gamma"))
    outbox = tmp_path / "outbox"
    config = pair.hub.home.config_path
    config.write_text(config.read_text() + f'\n[schedule]\nexport = "@every 1s"\nexport_dir = "{outbox}"\n')
    pair.close()
    process = subprocess.Popen(
        [sys.executable, "-m", "reservoir", "--home", str(pair.hub.home.root), "hub", "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while not list(outbox.glob("reservoir-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.5)  # more due runs: nothing new, nothing written
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "export: next run" in stderr
    assert [p.name.endswith("-000001") for p in outbox.glob("reservoir-*")] == [True]


def test_hub_run_without_a_schedule_says_what_to_add(tmp_path: Path) -> None:
    pair = make_pair(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "reservoir", "--home", str(pair.hub.home.root), "hub", "run"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "nothing scheduled" in result.stderr and "[schedule]" in result.stderr
    pair.close()
