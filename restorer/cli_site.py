"""`reservoir trust add|ls|rm`, `reservoir import`, `reservoir watch`, `reservoir publish`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from reservoir.context import AppContext, pass_app


def register(cli: click.Group) -> None:
    @cli.group()
    def trust() -> None:
        """Hub keys this site accepts bundles from."""

    @trust.command("add")
    @click.argument("key_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
    @pass_app
    def trust_add(app: AppContext, key_file: Path) -> None:
        """Trust the hub public key in KEY_FILE (from `reservoir key export`)."""
        from restorer.trust import trust_key

        app.home.require_role("site")
        click.echo(trust_key(app, key_file.read_bytes(), str(key_file)))

    @trust.command("ls")
    @pass_app
    def trust_ls(app: AppContext) -> None:
        """The trusted hub keys and the hub each one signs for."""
        from restorer.trust import describe_trust

        app.home.require_role("site")
        for line in describe_trust(app):
            click.echo(line)

    @trust.command("rm")
    @click.argument("fingerprint")
    @pass_app
    def trust_rm(app: AppContext, fingerprint: str) -> None:
        """Stop trusting the key whose fingerprint starts with FINGERPRINT, and unbind its hub."""
        from restorer.trust import untrust_key

        app.home.require_role("site")
        click.echo(untrust_key(app, fingerprint))

    @cli.command("import")
    @click.argument("bundle_dir", type=click.Path(path_type=Path, file_okay=False))
    @pass_app
    def import_(app: AppContext, bundle_dir: Path) -> None:
        """Verify and import one bundle folder."""
        from restorer.importer import import_bundle

        click.echo(import_bundle(app, bundle_dir).describe())

    @cli.command()
    @click.option("--full", is_flag=True, help="Rebuild every tree from the whole catalog, not only what imports changed.")
    @pass_app
    def publish(app: AppContext, full: bool) -> None:
        """Publish what imports changed since the last publish (normally done by the import itself)."""
        from restorer.importer import catch_up_publishing
        from restorer.publish import publish_site

        app.home.require_role("site")
        results = publish_site(app) if full else catch_up_publishing(app)
        if not results:
            click.echo("nothing to publish: the trees are up to date with the catalog")
        for result in results or []:
            how = "whole" if result.full else f"{result.rendered} leaves rendered"
            click.echo(f"published {result.kind}: {result.projects} leaves ({how}) in {result.generation.name}")

    @cli.command()
    @click.argument("inbox", type=click.Path(path_type=Path, file_okay=False), required=False)
    @click.option("--once", is_flag=True, help="One pass, then exit.")
    @click.option("--interval", type=float, default=10.0, show_default=True, help="Seconds between passes.")
    @pass_app
    def watch(app: AppContext, inbox: Path | None, once: bool, interval: float) -> None:
        """Import each bundle folder that lands in INBOX (default: the home's inbox/)."""
        from restorer.inbox import scan_inbox

        app.home.require_role("site")
        folder = inbox or app.home.inbox_dir
        while True:
            results = scan_inbox(app, folder)
            for result in results:
                click.echo(str(result))
            if once:
                if not results:
                    click.echo(f"no bundles in {folder}")
                if any(r.status == "failed" for r in results):
                    raise SystemExit(1)
                return
            time.sleep(interval)
