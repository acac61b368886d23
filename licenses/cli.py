"""`reservoir licenses report|review|vet`."""

from __future__ import annotations

from pathlib import Path

import click

from licenses.formats import FORMATS
from reservoir.context import AppContext, pass_app


def register(cli: click.Group) -> None:
    cli.add_command(licenses_group)


@click.group("licenses")
def licenses_group() -> None:
    """License verdicts, admin reviews and reports."""


@licenses_group.command("report")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="html", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="write here instead of stdout")
@pass_app
def report_command(app: AppContext, fmt: str, out: Path | None) -> None:
    """Print the license report of every active release."""
    from licenses.report import render

    with app.db.transaction() as session:
        text = render(session, fmt)
    if out is None:
        click.echo(text, nl=False)
        return
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    click.echo(f"wrote {out}")


@licenses_group.command("review")
@click.argument("name")
@click.argument("version")
@click.option("--approve", "decision", flag_value="approve", help="let the release through")
@click.option("--reject", "decision", flag_value="reject", help="deny the release")
@click.option("--reason", required=True, help="why (recorded and carried to the site)")
@click.option("--by", "who", default=None, help="who decides (default: the OS user)")
@click.option("--channel", default=None, help="the channel, when the release is in several")
@pass_app
def review_command(
    app: AppContext, name: str, version: str, decision: str | None, reason: str, who: str | None, channel: str | None
) -> None:
    """Record an admin's decision on a held release."""
    from licenses.review import default_reviewer, record_review

    if decision is None:
        raise click.UsageError("pass --approve or --reject")
    app.home.require_role("hub")
    with app.db.write_transaction() as session:
        result = record_review(
            session, name, version, approve=decision == "approve", reason=reason, who=who or default_reviewer(),
            channel=channel,
        )
    click.echo(f"{result.name} {result.version} ({result.channel}): {result.gate.value}")


@licenses_group.command("vet")
@pass_app
def vet_command(app: AppContext) -> None:
    """Re-vet every release in the store (after changing the [licenses] policy)."""
    from licenses.vetter import revet_all

    app.home.require_role("hub")
    count = revet_all(app)
    click.echo(f"vetted {count} releases")
