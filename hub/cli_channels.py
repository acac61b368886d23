"""`reservoir channel add | ls | rm`."""

from __future__ import annotations

from pathlib import Path

import click

from downloader.pypi.options import PyPIOptions, read_requirements_file
from downloader.pypi.targets import host_platform, host_python
from hub.channels import KINDS, add_channel, host_pip_index_url, list_channels, remove_channel
from reservoir.context import AppContext, pass_app


def register(cli: click.Group) -> None:
    cli.add_command(channel)


@click.group()
def channel() -> None:
    """Channels: what the hub mirrors, from where, for which targets."""


@channel.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), required=True)
@click.option("--upstream", default=None, help="Index URL (http(s):// or file://); default: the host pip's index.")
@click.option("--package", "packages", multiple=True, help="PEP 508 requirement (repeatable).")
@click.option("--requirements", "requirements_file", type=click.Path(path_type=Path, dir_okay=False),
              help="A file of PEP 508 requirements, one a line.")
@click.option("--python", "pythons", multiple=True, help="Target Python X.Y (repeatable; default: this one's).")
@click.option("--platform", "platforms", multiple=True,
              help="Target platform tag, e.g. manylinux_2_28_x86_64 (repeatable; default: the host's).")
@click.option("--latest", type=int, default=1, show_default=True, help="Versions of each requested project.")
@click.option("--sdists/--no-sdists", default=False, show_default=True, help="Mirror source distributions too.")
@pass_app
def channel_add(app: AppContext, name: str, kind: str, upstream: str | None, packages: tuple[str, ...],
                requirements_file: Path | None, pythons: tuple[str, ...], platforms: tuple[str, ...], latest: int,
                sdists: bool) -> None:
    """Create channel NAME (e.g. `--kind pypi --package 'requests>=2'`)."""
    app.home.require_role("hub")
    requested = list(packages) + (read_requirements_file(requirements_file) if requirements_file else [])
    options = PyPIOptions(
        packages=requested,
        pythons=list(pythons) or [host_python()],
        platforms=list(platforms) or [host_platform()],
        latest=latest,
        sdists=sdists,
    )
    with app.db.transaction() as session:
        created = add_channel(session, name, kind, upstream or host_pip_index_url(), options)
        click.echo(
            f"channel {created.name} ({kind}) from {created.upstream}: {len(requested)} requirement(s), "
            f"python {', '.join(options.pythons)} on {', '.join(options.platforms)}"
        )


@channel.command("ls")
@pass_app
def channel_ls(app: AppContext) -> None:
    """List channels with their upstream, targets and last sync."""
    with app.db.transaction() as session:
        infos = list_channels(session)
    if not infos:
        click.echo("no channels; add one with `reservoir channel add`")
    for info in infos:
        opts = info.options
        click.echo(f"{info.name}  {info.kind}  {info.upstream}")
        click.echo(f"  packages: {' '.join(opts.get('packages', []))}")
        click.echo(f"  targets: python {', '.join(opts.get('pythons', []))} on {', '.join(opts.get('platforms', []))}"
                   f"; latest {opts.get('latest', 1)}; sdists {'on' if opts.get('sdists') else 'off'}")
        click.echo(f"  releases: {info.active_releases}; last sync: {info.last_sync}")


@channel.command("rm")
@click.argument("name")
@pass_app
def channel_rm(app: AppContext, name: str) -> None:
    """Remove channel NAME and its release records (stored files are kept)."""
    with app.db.transaction() as session:
        remove_channel(session, name)
    click.echo(f"channel {name} removed")
