"""`reservoir apt sources CHANNEL`: the deb822 stanza a client drops into /etc/apt/sources.list.d/."""

from __future__ import annotations


import click

from reservoir.context import AppContext, pass_app
from reservoir.errors import ConfigError


def sources_stanza(url: str, channel: str, suites: list[str], components: list[str], arch: str,
                   signed_by: str) -> str:
    """deb822 (sources.list(5)); `signed_by` is a keyring path or an armored key (folded as deb822 wants)."""
    if "\n" in signed_by.strip():
        lines = signed_by.strip().splitlines()
        signed = "\n".join([lines[0], *(" " + (line if line.strip() else ".") for line in lines[1:])])
    else:
        signed = signed_by
    return "\n".join([
        "Types: deb",
        f"URIs: {url.rstrip('/')}/apt/{channel}/",
        f"Suites: {' '.join(suites)}",
        f"Components: {' '.join(components)}",
        f"Architectures: {arch}",
        f"Signed-By: {signed}",
    ]) + "\n"


def register(cli: click.Group) -> None:
    @cli.group()
    def apt() -> None:
        """The site's APT repositories."""

    @apt.command("sources")
    @click.argument("channel")
    @click.option("--url", default="http://localhost:8080", show_default=True,
                  help="The site's address as clients reach it.")
    @click.option("--key-file", default=None, metavar="PATH",
                  help="Name this keyring file in Signed-By (fetch it from /apt/CHANNEL/key.gpg) instead of the "
                       "key inline; apt before 2.3.10 (Ubuntu 20.04) needs this.")
    @pass_app
    def sources(app: AppContext, channel: str, url: str, key_file: str | None) -> None:
        """Print the deb822 .sources stanza for CHANNEL, signed by the site's key."""
        from sqlalchemy import select

        from reservoir.models import Channel
        from restorer.gpgkey import site_key
        from restorer.publish.apt import KIND, ChannelPolicy, live_suites

        app.home.require_role("site")
        with app.db.session() as session:
            row = session.scalars(select(Channel).where(Channel.name == channel)).one_or_none()
            if row is None or row.kind != KIND:
                known = sorted(session.scalars(select(Channel.name).where(Channel.kind == KIND)))
                raise ConfigError(f"no APT channel {channel!r} on this site",
                                  hint=f"APT channels here: {', '.join(known) or 'none yet; import a bundle first'}")
            options = dict(row.options or {})
        policy = ChannelPolicy.from_options(channel, options)
        suites = live_suites(app.home.trees_dir / KIND, channel) or list(options.get("suites") or [])
        if not suites:
            raise ConfigError(f"APT channel {channel} has no published suite yet", hint="run `reservoir publish`")
        components = list(options.get("components") or ["main"])
        signed_by = key_file or site_key(app.home.keys_dir).public_armored().decode()
        click.echo(sources_stanza(url, channel, suites, components, policy.arch, signed_by), nl=False)

    del sources
