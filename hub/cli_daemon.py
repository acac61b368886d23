"""`reservoir hub run`."""

from __future__ import annotations

import signal
import threading

import click

from reservoir.context import AppContext, pass_app
from reservoir.errors import ConfigError


def register(cli: click.Group) -> None:
    @cli.group("hub")
    def hub_group() -> None:
        """The hub's daemon."""

    @hub_group.command("run")
    @pass_app
    def run(app: AppContext) -> None:
        """Run sync and export on the [schedule] of reservoir.toml until stopped."""
        from apscheduler.schedulers.background import BackgroundScheduler

        from hub.daemon import HUB_JOBS, hub_job_specs
        from reservoir.schedule import install_jobs, job_lock, make_scheduler

        app.home.require_role("hub")
        specs = hub_job_specs(app)
        if not specs:
            raise ConfigError(
                "nothing scheduled", hint='add e.g. [schedule] sync = "0 2 * * *" and export = "0 3 * * 0" to reservoir.toml'
            )
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _signum, _frame: stop.set())
        with job_lock(app.home.tmp_dir, "hub-run"):
            scheduler = make_scheduler(BackgroundScheduler, app.home.db_url)
            scheduler.start(paused=True)
            install_jobs(scheduler, specs, set(HUB_JOBS))
            for job in scheduler.get_jobs():
                click.echo(f"{job.id}: next run {job.next_run_time}", err=True)
            scheduler.resume()
            stop.wait()
            # Let a running sync or export finish: its bundle must not be half-written.
            scheduler.shutdown(wait=True)
