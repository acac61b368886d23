"""`reservoir gpus` and `reservoir sched ...`: inventory, the request queue, trace replay."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import click

from reservoir.context import AppContext, pass_app
from reservoir.errors import ConfigError, ReservoirError
from sessions.policies import POLICY_NAMES
from sessions.resources import MILLI_PER_GPU, parse_request, parse_shares

TRACES_ENV = "RESERVOIR_TRACES"
DEFAULT_NODES = "openb_node_list_gpu_node.csv"
DEFAULT_PODS = "openb_pod_list_default.csv"


def traces_dir() -> Path:
    """Where the replay looks for the trace when no path is given: $RESERVOIR_TRACES, else ./traces."""
    return Path(os.environ.get(TRACES_ENV, "traces"))


def scheduler_config(app: AppContext) -> Any:
    from sessions.queue import SchedulerConfig

    section = app.home.section("scheduler")
    where = str(app.home.config_path)
    groups = section.get("groups", {})
    policies = {name: str(g.get("policy")) for name, g in groups.items() if isinstance(g, dict) and g.get("policy")}
    for name in [section.get("policy", "fgd-bf"), *policies.values()]:
        if name not in POLICY_NAMES:
            raise ConfigError(f"{where}: scheduler policy {name!r} is unknown", hint=f"one of {', '.join(POLICY_NAMES)}")
    try:
        max_wait = timedelta(seconds=float(section.get("max_wait_s", 600)))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: scheduler.max_wait_s must be a number of seconds") from None
    quota = section.get("default_quota")
    quota_milli = None if quota is None else _shares_milli(str(quota))
    return SchedulerConfig(
        policies=policies, default_policy=str(section.get("policy", "fgd-bf")), max_wait=max_wait, default_quota_milli=quota_milli
    )


def _shares_milli(value: str) -> int:
    milli, count = parse_shares(value)
    return milli * count if count <= 1 else MILLI_PER_GPU * count


def refresh_inventory(app: AppContext, probe: bool) -> str | None:
    """Sync declared nodes and (unless told not to) this machine's GPUs; returns why probing found none."""
    from sessions.inventory import declared_nodes, local_node, probe_gpus, sync_inventory

    nodes = declared_nodes(app.home.section("scheduler"), str(app.home.config_path))
    problem = None
    if probe:
        result = probe_gpus()
        node = local_node(result)
        if node is not None:
            nodes.append(node)
        problem = result.problem
    sync_inventory(app.db, nodes)
    return problem


@click.command("gpus")
@click.option("--no-probe", is_flag=True, help="Show the recorded inventory without asking NVML again.")
@pass_app
def gpus_command(app: AppContext, no_probe: bool) -> None:
    """Every GPU with its shares used and free and who holds them."""
    from sessions.report import gpu_table

    problem = refresh_inventory(app, probe=not no_probe)
    if problem:
        click.echo(f"note: this machine: {problem}", err=True)
    click.echo(gpu_table(app.db))


@click.group("sched")
def sched_group() -> None:
    """The fractional-GPU scheduler: queue and trace replay."""


@sched_group.command("replay")
@click.option("--nodes", "nodes_csv", type=click.Path(path_type=Path), help=f"Node list CSV [{TRACES_ENV} or ./traces]/{DEFAULT_NODES}.")
@click.option("--pods", "pods_csv", type=click.Path(path_type=Path), help=f"Task list CSV [default: .../{DEFAULT_PODS}].")
@click.option("--policy", type=click.Choice(POLICY_NAMES), default="fgd-bf", show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--tune", type=float, default=1.3, show_default=True, help="Tune the task list to this x cluster GPU.")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path), help="Write the curve as CSV here.")
@click.option("--png", "png_out", type=click.Path(path_type=Path), help="Plot the curve here (needs the 'plot' extra).")
def replay_command(
    nodes_csv: Path | None, pods_csv: Path | None, policy: str, seed: int, tune: float, csv_out: Path | None, png_out: Path | None
) -> None:
    """Replay a GPU cluster trace and print the allocation rate at 100 % arrived workload."""
    from sessions.replay import load_nodes, load_tasks, replay, require_matplotlib, write_curve_csv, write_curve_png

    if tune < 1.0:
        raise ReservoirError(f"--tune {tune} is below 1.0", hint="the workload must reach 100 % of the cluster")
    if png_out is not None:
        require_matplotlib()
    nodes = load_nodes(nodes_csv or traces_dir() / DEFAULT_NODES)
    tasks = load_tasks(pods_csv or traces_dir() / DEFAULT_PODS)
    result = replay(nodes, tasks, policy, seed, tune)
    click.echo(f"policy {policy} seed {seed}: {result.tasks} tasks, {result.failed} failed")
    click.echo(f"allocation rate at 100 % arrived workload: {result.allocation_at_full:.2f} %")
    click.echo(f"placement decisions per second: {result.decisions_per_second:,.0f}")
    if csv_out is not None:
        _write_output(csv_out, lambda: write_curve_csv(result, csv_out))
    if png_out is not None:
        _write_output(png_out, lambda: write_curve_png([result], png_out))


def _write_output(path: Path, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as exc:
        raise ReservoirError(f"cannot write {path}: {exc.strerror}", hint="choose a writable path") from exc
    click.echo(f"curve: {path}")


def _print_ticket(ticket: Any) -> None:
    where = f" on {ticket.node} " + ", ".join(f"{u}:{m / MILLI_PER_GPU:g}" for u, m in ticket.devices) if ticket.node else ""
    click.echo(f"request {ticket.id} ({ticket.user}): {ticket.state.value}{where}")


@sched_group.command("submit")
@click.option("--user", required=True)
@click.option("-r", "--resource", "resources", multiple=True, help="cuda.shares=0.5, cpu=2, mem=8g, cuda.model=A100|H100")
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--group", default="default", show_default=True, help="Resource group.")
@click.option("--label", default="", help="What the request is for (e.g. a session id).")
@pass_app
def submit_command(app: AppContext, user: str, resources: tuple[str, ...], priority: int, group: str, label: str) -> None:
    """Queue a request; it is placed at once when it fits."""
    from sessions.queue import submit

    refresh_inventory(app, probe=False)  # declared nodes may have changed in reservoir.toml
    ticket = submit(app.db, user, parse_request(resources), config=scheduler_config(app), priority=priority, group=group, label=label)
    _print_ticket(ticket)


@sched_group.command("release")
@click.argument("request_id", type=int)
@pass_app
def release_command(app: AppContext, request_id: int) -> None:
    """End a placed request or cancel a queued one; prints what that let through."""
    from sessions.queue import release

    click.echo(f"request {request_id}: released")
    for ticket in release(app.db, request_id, config=scheduler_config(app)):
        _print_ticket(ticket)


@sched_group.command("pass")
@click.option("--group", default="default", show_default=True)
@pass_app
def pass_command(app: AppContext, group: str) -> None:
    """Run one scheduling pass (reservations of long-waiting requests take effect)."""
    from sessions.queue import run_pass

    for ticket in run_pass(app.db, config=scheduler_config(app), group=group):
        _print_ticket(ticket)


@sched_group.command("queue")
@click.option("--all", "show_all", is_flag=True, help="Include released requests.")
@pass_app
def queue_command(app: AppContext, show_all: bool) -> None:
    """List queued and placed requests."""
    from sessions.queue import tickets

    for ticket in tickets(app.db, include_released=show_all):
        _print_ticket(ticket)


@sched_group.command("quota")
@click.argument("user")
@click.argument("shares")
@pass_app
def quota_command(app: AppContext, user: str, shares: str) -> None:
    """Cap the GPU shares USER may hold at once (`none` removes the cap)."""
    from sessions.queue import set_quota

    milli = None if shares == "none" else _shares_milli(shares)
    set_quota(app.db, user, milli)
    click.echo(f"quota for {user}: {'none' if milli is None else f'{milli / MILLI_PER_GPU:g} GPU'}")


def register(cli: click.Group) -> None:
    from sessions.session_cli import register as register_sessions

    cli.add_command(gpus_command)
    cli.add_command(sched_group)
    register_sessions(cli)
