"""`reservoir export`."""

from __future__ import annotations

from pathlib import Path

import click

from reservoir.context import AppContext, pass_app
from reservoir.errors import ConfigError


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{n} B"


def register(cli: click.Group) -> None:
    @cli.command("export")
    @click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
                  help="Folder (e.g. removable media) to write the bundle folder into.")
    @click.option("--full", is_flag=True, help="Carry everything, not only what changed (re-bases the site).")
    @click.option("--chunk-size", default="4G", show_default=True, help="Largest payload part (e.g. 4G for FAT32, 650M).")
    @pass_app
    def export(app: AppContext, out_dir: Path, full: bool, chunk_size: str) -> None:
        """Write the next bundle (what the site lacks) into OUT; prints its path last."""
        from transferer.export import export_bundle
        from transferer.format import parse_size

        try:
            size = parse_size(chunk_size)
        except ValueError as exc:
            raise ConfigError(f"--chunk-size: {exc}") from exc
        result = export_bundle(app, out_dir, full=full, chunk_size=size)
        if result.path is None:
            since = f"since bundle {result.seq}" if result.seq else "to export yet (sync first)"
            click.echo(f"nothing new {since}; no bundle written")
            return
        kind = "full" if result.base == 0 else f"incremental on {result.base}"
        click.echo(
            f"bundle {result.seq} ({kind}): {result.releases} releases, {result.removed} removed, "
            f"{result.blobs} files, {_human(result.payload_bytes)}"
        )
        click.echo(str(result.path))
