"""`reservoir serve` and `reservoir users`.

``serve`` pre-forks worker processes that share one listening socket (the
index is static files, so workers share nothing else); the parent process
supervises them and runs the inbox watcher.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import click
from aiohttp import web
from apscheduler.schedulers.background import BackgroundScheduler

from reservoir.context import AppContext, pass_app
from reservoir.errors import ConfigError
from reservoir.schedule import JobSpec, install_jobs, make_scheduler
from restorer.auth import AccountStore, auth_mode
from restorer.nginx import NginxSite, render_nginx_config
from restorer.publish import publish_site
from restorer.publish.tree import live_generation
from restorer.server import build_app, site_state

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
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}", hint="choose another --port") from exc
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def _run_worker(app_context: AppContext, sock: socket.socket, access_log: Path | None) -> None:
    """One worker process: an aiohttp server on the shared socket until SIGTERM."""
    mode = auth_mode(app_context.home.section("server").get("auth"))
    app = build_app(site_state(app_context, mode), mode)
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
            app, access_log=logger, access_log_format=ACCESS_LOG_FORMAT, handle_signals=False
        )
        await runner.setup()
        site = web.SockSite(runner, sock)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


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


def _fork_worker(app_context: AppContext, sock: socket.socket, access_log: Path | None) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _run_worker(AppContext(home_root=app_context.home_root), sock, access_log)
        except BaseException:  # noqa: BLE001
            logging.getLogger(__name__).exception("worker failed")
            code = 1
        finally:
            os._exit(code)
    return pid


def serve_forever(
    app_context: AppContext, host: str, port: int, workers: int, watch_interval: float, access_log: Path | None
) -> None:
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
    children = {_fork_worker(app_context, sock, access_log) for _ in range(workers)}
    watcher = _start_watcher(app_context, watch_interval)
    click.echo(f"serving {app_context.home.root} on http://{host}:{sock.getsockname()[1]}/ with {workers} workers", err=True)
    try:
        while not stopping:
            pid, _status = os.waitpid(-1, os.WNOHANG)
            if pid in children:
                children.discard(pid)
                if not stopping:
                    log.error("worker %d exited; starting another", pid)
                    children.add(_fork_worker(app_context, sock, access_log))
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


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--host", default=None, help="Address to listen on (default [server] host or 127.0.0.1).")
    @click.option("--port", type=int, default=None, help="Port (default [server] port or 8080).")
    @click.option("--workers", type=int, default=None, help="Worker processes (default: one per core).")
    @click.option(
        "--watch-interval",
        type=float,
        default=None,
        help="Seconds between inbox scans (default [site] watch_interval or 10; 0 disables the watcher).",
    )
    @click.option("--access-log", type=click.Path(path_type=Path, dir_okay=False), default=None)
    @click.option("--nginx-config", is_flag=True, help="Print an nginx configuration for the same trees and exit.")
    @pass_app
    def serve(
        app: AppContext,
        host: str | None,
        port: int | None,
        workers: int | None,
        watch_interval: float | None,
        access_log: Path | None,
        nginx_config: bool,
    ) -> None:
        """Serve the site's repositories, admin pages and inbox watcher."""
        home = app.home
        home.require_role("site")
        config = home.section("server")
        host = host or str(config.get("host", "127.0.0.1"))
        port = port if port is not None else int(config.get("port", 8080))
        mode = auth_mode(config.get("auth"))
        if nginx_config:
            store = AccountStore(home.keys_dir)
            htpasswd = store.write_htpasswd(store.load()) if mode != "none" else None
            click.echo(render_nginx_config(NginxSite(home.trees_dir, f"{host}:{port}", htpasswd)), nl=False)
            return
        interval = watch_interval if watch_interval is not None else float(home.section("site").get("watch_interval", 10))
        serve_forever(app, host, port, workers or (os.cpu_count() or 1), interval, access_log)

    @cli.group()
    def users() -> None:
        """Accounts that may read the index (when [server] auth is on) and use the admin pages."""

    @users.command("add")
    @click.argument("name")
    @click.option("--admin", is_flag=True, help="May use the admin pages.")
    @click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
    @pass_app
    def users_add(app: AppContext, name: str, admin: bool, password_stdin: bool) -> None:
        """Create an account or set its password."""
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = click.prompt("password", hide_input=True, confirmation_prompt=True)
        AccountStore(app.home.keys_dir).set_password(name, password, admin=admin)
        click.echo(f"account {name} saved{' (admin)' if admin else ''}")

    @users.command("token")
    @click.argument("name")
    @click.option("--admin", is_flag=True)
    @pass_app
    def users_token(app: AppContext, name: str, admin: bool) -> None:
        """Issue a new bearer token for NAME (printed once)."""
        click.echo(AccountStore(app.home.keys_dir).new_token(name, admin=admin))

    @users.command("ls")
    @pass_app
    def users_ls(app: AppContext) -> None:
        for account in AccountStore(app.home.keys_dir).load().values():
            kind = "admin" if account.admin else "reader"
            click.echo(f"{account.name}\t{kind}\t{len(account.token_sha256)} tokens")

    @users.command("rm")
    @click.argument("name")
    @pass_app
    def users_rm(app: AppContext, name: str) -> None:
        if not AccountStore(app.home.keys_dir).remove(name):
            raise ConfigError(f"no account named {name}")
        click.echo(f"account {name} removed")
