"""`reservoir advisories import PATH`."""

from __future__ import annotations

from pathlib import Path

import click

from reservoir.context import AppContext, pass_app


def register(cli: click.Group) -> None:
    cli.add_command(advisories_group)


@click.group("advisories")
def advisories_group() -> None:
    """Security advisories (OSV)."""


@advisories_group.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@pass_app
def import_command(app: AppContext, path: Path) -> None:
    """Import OSV records (a .json file, a folder, or an all.zip) and re-evaluate the store."""
    from licenses.security.quarantine import import_advisories

    result = import_advisories(app, path)
    click.echo(f"imported {result.imported} advisories ({result.withdrawn} withdrawn)")
    for label in result.quarantined:
        click.echo(f"quarantined {label}")
    for label in result.released:
        click.echo(f"released {label} (no advisory blocks it any more)")
    for label in result.flagged:
        click.echo(f"flagged {label} (served here; see `reservoir licenses report`)")
