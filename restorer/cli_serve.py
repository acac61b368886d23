"""`reservoir serve` and `reservoir users`."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import click

from reservoir.context import AppContext, pass_app
from reservoir.errors import ConfigError
from restorer.auth import AccountStore, auth_mode
from restorer.nginx import NginxSite, render_nginx_config

PORTS = click.IntRange(0, 65535)  # 0: any free port
_DOTTED_NUMBERS = re.compile(r"^[0-9.]+$")


def listen_host(text: str) -> str | None:
    """`text` as an address to listen on (an IP address, or a name this machine resolves), or None."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    # An IPv4 lookalike such as 999.1.1.1 is a typo, not a name to look up.
    if _DOTTED_NUMBERS.match(text):
        return None
    try:
        socket.getaddrinfo(text, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return None
    return text


class HostType(click.ParamType):
    """--host, refused here with its name rather than when the socket is bound."""

    name = "host"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        host = listen_host(str(value))
        if host is None:
            self.fail(f"{str(value)!r} is neither an IP address nor a name this machine resolves", param, ctx)
        return host


def configured_host(value: object) -> str:
    host = listen_host(str(value))
    if host is None:
        raise ConfigError(f"[server] host {value!r} is neither an IP address nor a name this machine resolves")
    return host


def configured_port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"[server] port must be a number from 0 to 65535, not {value!r}")
    return value


def _accounts(app: AppContext) -> AccountStore:
    """The site's accounts; a hub serves no index and has none."""
    app.home.require_role("site")
    return AccountStore(app.home.keys_dir)


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--host", type=HostType(), default=None, help="Address to listen on (default [server] host or 127.0.0.1).")
    @click.option("--port", type=PORTS, default=None, help="Port (default [server] port or 8080; 0 picks a free one).")
    @click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker processes (default: one per core).")
    @click.option(
        "--watch-interval",
        type=click.FloatRange(min=0),
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
        host = host or configured_host(config.get("host", "127.0.0.1"))
        port = port if port is not None else configured_port(config.get("port", 8080))
        mode = auth_mode(config.get("auth"))
        if nginx_config:
            htpasswd = _write_htpasswd(AccountStore(home.keys_dir)) if mode != "none" else None
            listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            click.echo(render_nginx_config(NginxSite(home.trees_dir, listen, htpasswd)), nl=False)
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
        store = _accounts(app)
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = click.prompt("password", hide_input=True, confirmation_prompt=True)
        store.set_password(name, password, admin=admin)
        click.echo(f"account {name} saved{' (admin)' if admin else ''}")

    @users.command("token")
    @click.argument("name")
    @click.option("--admin", is_flag=True)
    @pass_app
    def users_token(app: AppContext, name: str, admin: bool) -> None:
        """Issue a new bearer token for NAME (printed once)."""
        click.echo(_accounts(app).new_token(name, admin=admin))

    @users.command("ls")
    @pass_app
    def users_ls(app: AppContext) -> None:
        for account in _accounts(app).load().values():
            kind = "admin" if account.admin else "reader"
            click.echo(f"{account.name}\t{kind}\t{len(account.token_sha256)} tokens")

    @users.command("rm")
    @click.argument("name")
    @pass_app
    def users_rm(app: AppContext, name: str) -> None:
        if not _accounts(app).remove(name):
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
