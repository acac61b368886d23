"""The `reservoir` command. Components add their subcommands via entry points."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from reservoir import __version__
from reservoir.context import AppContext, pass_app
from reservoir.errors import ReservoirError
from reservoir.home import ROLES, create_home, default_home
from reservoir.plugins import command_registrars
from reservoir.progress import Progress, configure_logging


# click >= 8.2 signals "no subcommand, show the help" with a UsageError that must keep printing the help.
_SHOW_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class ReservoirGroup(click.Group):
    """Turns ReservoirError, and click's refusal of an option, into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ReservoirError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except click.UsageError as exc:
            if isinstance(exc, _SHOW_HELP):
                raise
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            click.echo(f"error: {exc.format_message().rstrip('.')} (see `{where} --help`)", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=ReservoirGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    "home_root",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Reservoir home directory (default: $RESERVOIR_HOME or ~/.reservoir).",
)
@click.option("-v", "--verbose", count=True, help="More log output (repeatable).")
@click.version_option(__version__, prog_name="reservoir")
@click.pass_context
def cli(ctx: click.Context, home_root: Path | None, verbose: int) -> None:
    """Package mirrors and GPU sessions for air-gapped sites."""
    configure_logging(verbose)
    app = AppContext(home_root=(home_root or default_home()).absolute())
    ctx.obj = app
    ctx.call_on_close(app.close)


@cli.command()
@click.option("--role", type=click.Choice(ROLES), required=True, help="hub (connected side) or site (air-gapped side).")
@pass_app
def init(app: AppContext, role: str) -> None:
    """Create a Reservoir home: config, database, folders (and a hub's signing key)."""
    from reservoir.db import open_database
    from reservoir.keys import create_signing_key

    home = create_home(app.home_root, role)  # type: ignore[arg-type]
    db = open_database(home.db_url)
    db.dispose()
    if role == "hub":
        key = create_signing_key(home.keys_dir)
        click.echo(f"hub key {key.fingerprint[:16]} written to {home.keys_dir}")
    from reservoir.plugins import init_hooks

    for hook in init_hooks():
        said = hook(home, role)
        if said:
            click.echo(said)
    click.echo(f"initialised {role} home at {home.root}")


@cli.group()
def key() -> None:
    """The hub's signing key."""


@key.command("export")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@pass_app
def key_export(app: AppContext, out: Path) -> None:
    """Write the hub's public key, for sites to `reservoir trust add`."""
    from reservoir.keys import load_signing_key, public_key_file

    app.home.require_role("hub")
    signing = load_signing_key(app.home.keys_dir)
    # The file names the hub, so `trust add` binds that hub id to this key only.
    out.write_bytes(public_key_file(signing.public, app.home.instance_id))
    click.echo(f"public key {signing.fingerprint[:16]} written to {out}")


@cli.group()
def blobs() -> None:
    """The content-addressed blob store."""


@blobs.command("verify")
@pass_app
def blobs_verify(app: AppContext) -> None:
    """Re-hash every stored blob and report any that are corrupt."""
    store = app.blobs
    digests = list(store.iter_digests())
    bad = []
    with Progress("verifying blobs", total=len(digests), unit="blob") as progress:
        for digest in digests:
            if not store.verify(digest):
                bad.append(digest)
            progress.update()
    for digest in bad:
        click.echo(f"corrupt: {store.path(digest)}")
    click.echo(f"{len(digests)} blobs checked, {len(bad)} corrupt")
    if bad:
        sys.exit(1)


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: AppContext) -> None:
    """Migrate the database to the newest schema of every installed component."""
    app.db.upgrade()
    click.echo(f"database at {app.db.url} is current")


@db.command("revision")
@click.option("-m", "--message", required=True)
@click.option("--branch", required=True, help="Component name: core, hub, sessions, ...")
@click.option("--versions-dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@pass_app
def db_revision(app: AppContext, message: str, branch: str, versions_dir: Path) -> None:
    """(Developers) autogenerate a migration for one component's branch."""
    from alembic import command
    from alembic.script import ScriptDirectory

    database = app.db
    cfg = database.alembic_config()
    labels = {label for rev in ScriptDirectory.from_config(cfg).walk_revisions() for label in rev.branch_labels}
    with database.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        if branch in labels:
            command.revision(cfg, message=message, autogenerate=True, head=f"{branch}@head")
        else:
            command.revision(
                cfg, message=message, autogenerate=True, head="base", branch_label=branch, version_path=str(versions_dir)
            )


def _register_components() -> None:
    for register in command_registrars():
        register(cli)


_register_components()


def main() -> None:
    cli(prog_name="reservoir")
