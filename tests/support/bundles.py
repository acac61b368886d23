"""Hub and site homes for bundle tests, filled from real wheels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from reservoir.context import AppContext
from reservoir.home import create_home
from reservoir.keys import add_trusted_key, create_signing_key, load_signing_key, public_pem
from reservoir.models import Channel, Release
from restorer.models import ImportedBundle
from tests.support.site import add_file


@dataclass
class Pair:
    hub: AppContext
    site: AppContext
    media: Path

    def close(self) -> None:
        self.hub.close()
        self.site.close()


def make_pair(root: Path, site_db_url: str | None = None) -> Pair:
    hub_home = create_home(root / "hub", "hub")
    create_signing_key(hub_home.keys_dir)
    site_home = create_home(root / "site", "site")
    if site_db_url:
        site_home.config["database"] = {"url": site_db_url}
        site_home.save_config()
    add_trusted_key(site_home.keys_dir, public_pem(load_signing_key(hub_home.keys_dir).public), "hub.pub")
    return Pair(AppContext(home_root=hub_home.root), AppContext(home_root=site_home.root), root / "media")


def hub_channel(hub: AppContext, name: str = "py") -> int:
    with hub.db.transaction() as s:
        channel = s.scalars(select(Channel).where(Channel.name == name)).first()
        if channel is None:
            channel = Channel(name=name, kind="pypi", upstream="file:///upstream", options={})
            s.add(channel)
            s.flush()
        return channel.id


def add_to_hub(hub: AppContext, *wheels: Path, channel: str = "py") -> None:
    hub_channel(hub, channel)
    with hub.db.transaction() as s:
        ch = s.scalars(select(Channel).where(Channel.name == channel)).one()
        for wheel in wheels:
            add_file(s, hub.blobs, ch, wheel)


def site_catalog(site: AppContext) -> dict[str, list[str]]:
    """{name==version: [filenames]} of the site's catalog."""
    with site.db.session() as s:
        return {
            f"{r.name}=={r.version}": sorted(a.filename for a in r.artifacts)
            for r in s.scalars(select(Release)).all()
        }


def imported_seqs(site: AppContext) -> list[int]:
    with site.db.session() as s:
        return sorted(s.scalars(select(ImportedBundle.seq)).all())


def release_count(site: AppContext) -> int:
    with site.db.session() as s:
        return int(s.scalar(select(func.count()).select_from(Release)) or 0)


def served_projects(site: AppContext) -> list[str]:
    index = site.home.trees_dir / "pypi" / "current" / "simple" / "index.json"
    if not index.exists():
        return []
    return sorted(p["name"] for p in json.loads(index.read_bytes())["projects"])
