"""What `reservoir serve` runs: pre-forked workers and the inbox watcher.

The parent process opens one listening socket and forks worker processes
that share it (the index is static files, so workers share nothing else);
it supervises them and runs the inbox watcher.

[server] in reservoir.toml bounds what one client may hold in a worker:
`head_timeout` (seconds to send a whole request head, default 15),
`max_connections_per_client` (open at once from one address, default 128),
`keepalive_timeout` (seconds idle between requests, default 75).
`fast_path = false` leaves every request to aiohttp alone, without those
bounds: a reference to compare the fast path with, not a way to serve.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import aiohttp.web_response
from aiohttp import web
from apscheduler.schedulers.background import BackgroundScheduler

from reservoir import aio
from reservoir.context import AppContext
from reservoir.errors import ConfigError
from reservoir.schedule import JobSpec, install_jobs, make_scheduler
from restorer.auth import auth_mode
from restorer.fastpath import HEAD_LIMITS, ClientLimits, FastPath, IndexAnswers
from restorer.publish import publish_site
from restorer.publish.tree import live_generation
from restorer.server import build_app, site_state
from restorer.wire import SERVER

log = logging.getLogger(__name__)
WATCH_JOB = "site-inbox-watch"
# Common log format plus the negotiated-for header, which operators debug most.
ACCESS_LOG_FORMAT = '%a %t "%r" %s %b "%{Accept}i" "%{User-Agent}i"'


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        # A port in use or privileged is the port's fault; an address this machine does not have is the host's.
        option = "--port" if exc.errno in (errno.EADDRINUSE, errno.EACCES) else "--host"
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}", hint=f"choose another {option}") from exc
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


@dataclass(frozen=True)
class WorkerOptions:
    limits: ClientLimits
    fast_path: bool = True


def _positive(config: dict[str, Any], key: str, default: float, kind: type) -> Any:
    value = config.get(key, default)
    number = not isinstance(value, bool) and isinstance(value, int if kind is int else (int, float))
    if not number or value <= 0:
        what = "a whole number" if kind is int else "a number of seconds"
        message = f"[server] {key} must be {what} above 0, not {value!r}"
        raise ConfigError(message, hint=f"set it in reservoir.toml (default {default})")
    return kind(value)


def worker_options(config: dict[str, Any]) -> WorkerOptions:
    """[server]'s limits, checked in the parent so that a typo fails once, before any worker starts."""
    defaults = ClientLimits()
    limits = ClientLimits(
        head_timeout_s=_positive(config, "head_timeout", defaults.head_timeout_s, float),
        max_connections=_positive(config, "max_connections_per_client", defaults.max_connections, int),
        keepalive_s=_positive(config, "keepalive_timeout", defaults.keepalive_s, float),
    )
    fast_path = config.get("fast_path", True)
    if not isinstance(fast_path, bool):
        raise ConfigError(f"[server] fast_path must be true or false, not {fast_path!r}")
    return WorkerOptions(limits, fast_path)


def _run_worker(app_context: AppContext, sock: socket.socket, access_log: Path | None, options: WorkerOptions) -> None:
    """One worker process on the shared socket until SIGTERM: the fast path first, aiohttp for the rest."""
    # aiohttp names itself and its version in Server: on every answer it writes, its own 400s included.
    aiohttp.web_response.SERVER_SOFTWARE = SERVER
    mode = auth_mode(app_context.home.section("server").get("auth"))
    state = site_state(app_context, mode)
    app = build_app(state, mode)
    logger = None
    if access_log is not None:
        logger = logging.getLogger("reservoir.access")
        handler = logging.FileHandler(access_log)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False

    async def main() -> None:
        runner = web.AppRunner(
            app,
            access_log=logger,
            access_log_format=ACCESS_LOG_FORMAT,
            handle_signals=False,
            keepalive_timeout=options.limits.keepalive_s,
            **HEAD_LIMITS,
        )
        await runner.setup()
        assert runner.server is not None
        fast_path = FastPath(IndexAnswers(state, mode), runner.server, logger, options.limits)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(fast_path.protocol if options.fast_path else runner.server, sock=sock)
        sweeper = loop.create_task(fast_path.sweep_idle())
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()
        sweeper.cancel()
        fast_path.close_all()
        await runner.cleanup()  # and the connections aiohttp took over

    aio.run(main())


def _start_watcher(app_context: AppContext, interval: float) -> BackgroundScheduler | None:
    """The inbox watcher as an APScheduler job stored in the site's database."""
    if interval <= 0:
        return None
    scheduler = make_scheduler(BackgroundScheduler, app_context.home.db_url)
    scheduler.start(paused=True)
    spec = JobSpec(WATCH_JOB, "restorer.inbox:scheduled_scan", f"@every {max(1, int(interval))}s", (str(app_context.home.root),))
    install_jobs(scheduler, [spec], {WATCH_JOB})
    scheduler.resume()
    return scheduler


def _fork_worker(app_context: AppContext, sock: socket.socket, access_log: Path | None, options: WorkerOptions) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _run_worker(AppContext(home_root=app_context.home_root), sock, access_log, options)
        except BaseException:  # noqa: BLE001
            logging.getLogger(__name__).exception("worker failed")
            code = 1
        finally:
            os._exit(code)
    return pid


def serve_forever(
    app_context: AppContext, host: str, port: int, workers: int, watch_interval: float, access_log: Path | None
) -> None:
    options = worker_options(app_context.home.section("server"))
    sock = _listen(host, port)
    from restorer.importer import catch_up_publishing

    if not catch_up_publishing(app_context) and live_generation(app_context.home.trees_dir / "pypi") is None:
        publish_site(app_context)
    app_context.close()  # no connection may cross a fork
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = {_fork_worker(app_context, sock, access_log, options) for _ in range(workers)}
    watcher = _start_watcher(app_context, watch_interval)
    click.echo(f"serving {app_context.home.root} on http://{host}:{sock.getsockname()[1]}/ with {workers} workers", err=True)
    try:
        while not stopping:
            pid, _status = os.waitpid(-1, os.WNOHANG)
            if pid in children:
                children.discard(pid)
                if not stopping:
                    log.error("worker %d exited; starting another", pid)
                    children.add(_fork_worker(app_context, sock, access_log, options))
            time.sleep(0.2)
    finally:
        if watcher is not None:
            watcher.shutdown(wait=True)
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        sock.close()
