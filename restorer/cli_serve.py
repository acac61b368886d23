"""`reservoir serve` and `reservoir users`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from reservoir.context import AppContext, pass_app
from reservoir.errors import ConfigError
from restorer.auth import AccountStore, auth_mode
from restorer.nginx import NginxSite, render_nginx_config


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
            htpasswd = _write_htpasswd(AccountStore(home.keys_dir)) if mode != "none" else None
            click.echo(render_nginx_config(NginxSite(home.trees_dir, f"{host}:{port}", htpasswd)), nl=False)
            return
        interval = watch_interval if watch_interval is not None else float(home.section("site").get("watch_interval", 10))
        from restorer.serving import serve_forever

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


def _write_htpasswd(store: AccountStore) -> Path:
    """nginx's password file, written only for an nginx configuration; says which accounts nginx will refuse."""
    accounts = store.load()
    for account in accounts.values():
        if account.password_scrypt and not account.password_crypt:
            click.echo(
                f"warning: account {account.name} has no password nginx can check "
                f"(set before this version): run `reservoir users add {account.name}` again",
                err=True,
            )
    return store.write_htpasswd(accounts)
