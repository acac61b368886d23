"""`reservoir channel add | ls | rm`.

`channel add` gains the options of every installed ecosystem
(`Ecosystem.cli_options`); an option one kind declares and another does not
is refused for that other kind, so a typo never passes silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click

from downloader.base import OptionSpec, ecosystem, find_ecosystem, installed_kinds
from reservoir.context import AppContext, pass_app


def register(cli: click.Group) -> None:
    cli.add_command(channel)


@click.group()
def channel() -> None:
    """Channels: what the hub mirrors, from where, for which targets."""


def _owners() -> tuple[dict[str, OptionSpec], dict[str, set[str]]]:
    """Every kind's options by name (the first declaration wins), and which kinds read each."""
    specs: dict[str, OptionSpec] = {}
    owners: dict[str, set[str]] = {}
    for kind in installed_kinds():
        for spec in ecosystem(kind).cli_options():
            first = specs.setdefault(spec.name, spec)
            if spec.help not in first.help.split("; "):
                specs[spec.name] = replace(first, help=f"{first.help}; {spec.help}")
            owners.setdefault(spec.name, set()).add(kind)
    return specs, owners


def _click_option(spec: OptionSpec) -> Callable[[Any], Any]:
    kwargs: dict[str, Any] = {"help": spec.help, "show_default": spec.show_default}
    if spec.multiple:
        kwargs["multiple"] = True
    if spec.is_flag:
        kwargs["is_flag"] = True
    if spec.default is not None:
        kwargs["default"] = spec.default
    if spec.type is not None:
        kwargs["type"] = spec.type
    return click.option(*spec.flags, spec.name, **kwargs)


def _with_ecosystem_options(command: Callable[..., Any]) -> Callable[..., Any]:
    specs, _ = _owners()
    for spec in reversed(list(specs.values())):
        command = _click_option(spec)(command)
    return command


def _given_elsewhere(ctx: click.Context, kind: str, values: dict[str, Any]) -> list[str]:
    """Options given on the command line that `kind` does not read."""
    specs, owners = _owners()
    out = []
    for name in values:
        source = ctx.get_parameter_source(name)
        if kind not in owners.get(name, {kind}) and source not in (None, click.core.ParameterSource.DEFAULT):
            out.append(specs[name].flags[0].split("/")[0])
    return out


@channel.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(installed_kinds()), required=True)
@click.option("--upstream", default=None,
              help="Upstream URL (http(s):// or file://); default: the host's own client's (pip's index, apt sources).")
@_with_ecosystem_options
@pass_app
def channel_add(app: AppContext, name: str, kind: str, upstream: str | None, **values: Any) -> None:
    """Create channel NAME (e.g. `--kind pypi --package 'requests>=2'`, `--kind apt --suite bookworm --package hello`)."""
    app.home.require_role("hub")
    stray = _given_elsewhere(click.get_current_context(), kind, values)
    if stray:
        raise click.UsageError(f"{', '.join(stray)} is not an option of --kind {kind}")
    setup = ecosystem(kind).configure({**values, "upstream": upstream})
    from hub.channels import add_channel

    with app.db.transaction() as session:
        created = add_channel(session, name, kind, setup)
        click.echo(f"channel {created.name} ({kind}) from {created.upstream}: {setup.summary}")


@channel.command("ls")
@pass_app
def channel_ls(app: AppContext) -> None:
    """List channels with their upstream, targets and last sync."""
    from hub.channels import list_channels

    with app.db.transaction() as session:
        infos = list_channels(session)
    if not infos:
        click.echo("no channels; add one with `reservoir channel add`")
    for info in infos:
        click.echo(f"{info.name}  {info.kind}  {info.upstream}")
        found = find_ecosystem(info.kind)
        lines = found.describe(info.upstream, info.options) if found else [f"options: {info.options}"]
        for line in lines:
            click.echo(f"  {line}")
        click.echo(f"  releases: {info.active_releases}; last sync: {info.last_sync}")


@channel.command("rm")
@click.argument("name")
@pass_app
def channel_rm(app: AppContext, name: str) -> None:
    """Remove channel NAME and its release records (stored files are kept)."""
    from hub.channels import remove_channel

    with app.db.transaction() as session:
        remove_channel(session, name)
    click.echo(f"channel {name} removed")
