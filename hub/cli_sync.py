"""`reservoir sync [NAME ...]`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from reservoir.context import AppContext, pass_app
from reservoir.errors import ReservoirError

if TYPE_CHECKING:
    from hub.sync import ChannelReport


def register(cli: click.Group) -> None:
    cli.add_command(sync)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def print_report(report: ChannelReport) -> None:
    for added in report.added:
        files = "file" if added.files == 1 else "files"
        click.echo(f"+ {added.name} {added.version} ({added.files} {files}, {human_size(added.size)})")
    for name, version in report.removed:
        click.echo(f"- {name} {version}")
    for failed in report.failed:
        click.echo(f"! {failed.name} {failed.version}: {failed.reason}")
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"channel {report.channel}: {report.selected} releases selected, {len(report.added)} added, "
        f"{len(report.removed)} removed, {len(report.failed)} failed; downloaded {report.downloaded_files} files "
        f"({human_size(report.downloaded_bytes)}) in {report.seconds:.2f}s"
    )


@click.command()
@click.argument("names", nargs=-1)
@pass_app
def sync(app: AppContext, names: tuple[str, ...]) -> None:
    """Sync channels (all when none is named): select, fetch what is new, record, vet."""
    from hub.sync import channel_names, sync_channel

    app.home.require_role("hub")
    failed = False
    targets = channel_names(app, list(names))
    for name in targets:
        try:
            report = sync_channel(app, name)
        except ReservoirError as exc:
            if len(targets) == 1:
                raise
            click.echo(f"error: channel {name}: {exc}", err=True)
            failed = True
            continue
        print_report(report)
        failed = failed or not report.ok
    if failed:
        sys.exit(1)
