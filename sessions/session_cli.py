"""`reservoir session ...` and `reservoir login`: users talk to the site's API; admins' image and layer commands run on the site."""

from __future__ import annotations

import getpass
import sys
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from reservoir.context import AppContext, pass_app
from reservoir.errors import ReservoirError
from sessions.client import Client, save_login, site_url


def _age(created: str) -> str:
    try:
        seconds = int((datetime.now(timezone.utc) - datetime.fromisoformat(created)).total_seconds())
    except ValueError:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


@click.command("login")
@click.option("--url", help="The site (default: $RESERVOIR_URL).")
@click.option("--user", help="Your site user name (asked when not given).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def login_command(url: str | None, user: str | None, password_stdin: bool) -> None:
    """Log in to the site once: a token is saved for the session commands."""
    site = site_url(url)
    name = user or input("user: ")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else getpass.getpass("password: ")
    answer = Client.with_password(site, name, password).call("POST", "/api/login")
    path = save_login(site, answer["token"])
    click.echo(f"logged in to {site} as {answer['user']} (token saved in {path})")


@click.group("session")
def session_group() -> None:
    """GPU compute sessions on the site (RESERVOIR_URL, RESERVOIR_TOKEN or `reservoir login`)."""


@session_group.command("create", context_settings={"ignore_unknown_options": False})
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-r", "--resource", "resources", multiple=True, help="cuda.shares=0.5, cpu=2, mem=8g")
@click.option("--name", default="", help="A name to refer to the session by.")
@click.option("--type", "kind", type=click.Choice(["interactive", "batch"]), default="interactive", show_default=True)
def create_command(image: str, command: tuple[str, ...], resources: tuple[str, ...], name: str, kind: str) -> None:
    """Start a session of IMAGE; a batch session runs the command after -- and ends with it."""
    from sessions.resources import parse_request

    parse_request(resources)  # refuse a typo here, before the site sees it
    view = Client.from_env().call(
        "POST", "/api/sessions", {"image": image, "resources": list(resources), "name": name, "type": kind, "command": list(command)}
    )
    click.echo(f"session {view['id']} ({view['name']}): {view['state']}: {view['status']}")


@session_group.command("ls")
def ls_command() -> None:
    """Your sessions: state, resources, node and GPU, age; a queued one says why it waits."""
    views = Client.from_env().call("GET", "/api/sessions")
    if not views:
        click.echo("no sessions")
        return
    rows = [("ID", "NAME", "USER", "TYPE", "STATE", "SHARES", "CPU", "MEM", "NODE", "AGE", "STATUS")]
    for v in views:
        rows.append((str(v["id"]), v["name"], v["user"], v["kind"], v["state"], v["shares"], v["cpu"], f"{v['mem_mib']}m",
                     v["node"] or "-", _age(v["created_at"]), v["status"]))
    click.echo(_table(rows))


@session_group.command("info")
@click.argument("ref")
def info_command(ref: str) -> None:
    """Everything about one session: what it asked for and used, its container's limits and environment."""
    v = Client.from_env().call("GET", f"/api/sessions/{_quote(ref)}")
    lines = [
        f"session {v['id']} ({v['name']}) of {v['user']}: {v['state']}",
        f"status: {v['status']}",
        f"image: {v['image']}  type: {v['kind']}" + (f"  command: {' '.join(v['command'])}" if v["command"] else ""),
        f"asked: cuda.shares={v['shares']} cpu={v['cpu']} mem={v['mem_mib']}m",
    ]
    used = v["usage"] or {}
    if "cpu_seconds" not in used and v["state"] == "ended":
        lines.append("used: not measured (it ended before the first sample, taken every 2 s)")
    elif used:
        lines.append(f"used: cpu {used.get('cpu_seconds', '-')} s, memory peak {used.get('mem_peak_mib', '-')} MiB"
                     + (f", GPU {used['gpu_util_pct']} % (mean of the device's)" if "gpu_util_pct" in used else "")
                     + (f", GPU memory peak {used['gpu_mem_peak_mib']} MiB" if "gpu_mem_peak_mib" in used else ""))
    if v["devices"]:
        lines.append("GPUs: " + ", ".join(f"{u} {s:.2f}" for u, s in v["devices"]))
    if v["exit_code"] is not None:
        lines.append(f"exit code: {v['exit_code']}")
    lines.append(f"created {v['created_at']}" + (f", started {v['started_at']}" if v["started_at"] else "")
                 + (f", ended {v['ended_at']}" if v["ended_at"] else ""))
    spec = v.get("spec") or {}
    if spec:
        lines.append(f"container: user {spec.get('user')}, network {spec.get('network_mode')}, "
                     f"cpus {spec.get('nano_cpus', 0) / 1e9:g}, memory {spec.get('mem_limit_bytes', 0) // 1048576} MiB, "
                     f"GPU runtime {'yes' if spec.get('gpu_runtime') else 'no'}")
        for key, value in sorted((spec.get("env") or {}).items()):
            lines.append(f"  {key}={value}")
    click.echo("\n".join(lines))


@session_group.command("logs")
@click.argument("ref")
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the session writes.")
@click.option("--tail", type=int, help="Only the last N lines.")
def logs_command(ref: str, follow: bool, tail: int | None) -> None:
    """The session's output."""
    query = urllib.parse.urlencode({"follow": "1" if follow else "0", **({"tail": str(tail)} if tail is not None else {})})
    out = sys.stdout.buffer
    for chunk in Client.from_env().stream(f"/api/sessions/{_quote(ref)}/logs?{query}"):
        out.write(chunk)
        out.flush()


@session_group.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("ref")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_command(ref: str, command: tuple[str, ...]) -> None:
    """Run a command in the session (as you, in /home/work); exits with its exit code."""
    result = Client.from_env().call("POST", f"/api/sessions/{_quote(ref)}/exec", {"command": list(command)})
    sys.stdout.write(result["output"])
    sys.stdout.flush()
    sys.exit(int(result["exit_code"]))


@session_group.command("shell")
@click.argument("ref")
def shell_command(ref: str) -> None:
    """An interactive terminal in the session."""
    from sessions.shell import run_terminal

    client = Client.from_env()
    sys.exit(run_terminal(client.url, client.authorization, f"/api/sessions/{_quote(ref)}/shell"))


@session_group.command("rm")
@click.argument("ref")
def rm_command(ref: str) -> None:
    """End the session (if it still runs), remove its container and free its shares."""
    view = Client.from_env().call("DELETE", f"/api/sessions/{_quote(ref)}")
    click.echo(f"session {view['id']} ({view['name']}): removed")


def _quote(ref: str) -> str:
    return urllib.parse.quote(ref, safe="")


@session_group.group("image")
def image_group() -> None:
    """(Admins, on the site) images sessions run."""


def _service(app: AppContext) -> Any:
    from sessions.cli import scheduler_config
    from sessions.docker_backend import DockerBackend
    from sessions.service import SessionService, sessions_config

    service = SessionService(app, sessions_config(app, scheduler_config(app)), lambda url: DockerBackend(url))
    service.sync_nodes()
    return service


@image_group.command("import")
@click.argument("tarball", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("name")
@pass_app
def image_import(app: AppContext, tarball: Path, name: str) -> None:
    """Import a root filesystem TARBALL as image NAME on every node's engine (no registry needed)."""
    service = _service(app)
    for node in service.node_names():
        image_id = service.backend(node).import_image(str(tarball), name)
        click.echo(f"{node}: {name} = {image_id[:19]}")


@image_group.command("build")
@click.argument("name")
@click.option("--debootstrap", "use_debootstrap", is_flag=True, required=True,
              help="A debootstrap --variant=minbase root with python3 and pip (the one kind built here).")
@click.option("--suite", help="Debian suite (default: the host's apt source).")
@click.option("--mirror", help="Debian mirror URL (default: the host's apt source).")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), help="Tarball cache (default: ~/.cache/reservoir/images).")
@pass_app
def image_build(app: AppContext, name: str, use_debootstrap: bool, suite: str | None, mirror: str | None, cache: Path | None) -> None:
    """Build a minimal Python image NAME (cached by its inputs) and import it on every node's engine."""
    from sessions.images import AptOrigin, debootstrap_tarball, host_apt_origin

    if bool(suite) != bool(mirror):
        raise ReservoirError("--suite and --mirror go together", hint="give both, or neither to use the host's apt source")
    origin = AptOrigin(suite, mirror) if suite and mirror else host_apt_origin()
    tarball = debootstrap_tarball(cache, origin)
    click.echo(f"root filesystem: {tarball}")
    service = _service(app)
    for node in service.node_names():
        image_id = service.backend(node).import_image(str(tarball), name)
        click.echo(f"{node}: {name} = {image_id[:19]}")


@session_group.group("layer")
def layer_group() -> None:
    """(Admins, on the site) the shared package layer under every user's overlay."""


@layer_group.command("build")
@click.argument("packages", nargs=-1, required=True)
@click.option("--image", required=True, help="The session image whose Python the layer is for.")
@click.option("--index-url", help="The site's PyPI index as the node reaches it (default: [sessions] mirror_url + /pypi/simple/).")
@pass_app
def layer_build(app: AppContext, packages: tuple[str, ...], image: str, index_url: str | None) -> None:
    """Install PACKAGES from the site mirror into a new shared layer; sessions started from now on see it."""
    from sessions.layer import build_layer

    service = _service(app)
    base = index_url or (service.config.mirror_url and service.config.mirror_url.rstrip("/") + "/pypi/simple/")
    if not base:
        raise ReservoirError("which index? no --index-url and no [sessions] mirror_url", hint="pass --index-url http://site:8080/pypi/simple/")
    node = service.node_names()[0]
    path = build_layer(service.backend(node), service.config, image, list(packages), base)
    click.echo(f"layer {path.name}: {', '.join(packages)}")


def register(cli: click.Group) -> None:
    cli.add_command(login_command)
    cli.add_command(session_group)


__all__ = ["register"]
