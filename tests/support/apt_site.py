"""Site-side APT fixtures: a site home whose catalog is filled directly from real `.deb`s, as an import would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from downloader.apt.adapter import release_meta, upstream_file
from downloader.apt.packages import parse_packages
from reservoir.blobs import BlobStore
from reservoir.context import AppContext
from reservoir.home import create_home
from reservoir.models import Artifact, ArtifactState, Channel, Gate, Release
from tests.support.apt_repo import stanza


def site_app(root: Path) -> AppContext:
    """A fresh site home (no `init` hooks: the APT publisher makes the key on its first publish)."""
    create_home(root, "site")
    app = AppContext(root)
    app.db  # noqa: B018 (creates the schema)
    return app


def apt_channel(session: Session, name: str, **options: Any) -> Channel:
    channel = session.scalars(select(Channel).where(Channel.name == name)).one_or_none()
    if channel is None:
        channel = Channel(name=name, kind="apt", upstream="", options={"arch": "amd64", **options})
        session.add(channel)
        session.flush()
    return channel


def record_of(deb: Path, suite: str, component: str = "main") -> Any:
    text = stanza(deb, f"pool/{component}/x/{deb.name}")
    (record,) = parse_packages(text, "fixture", suite, component)
    return record


def add_deb(session: Session, blobs: BlobStore, channel: Channel, deb: Path, suite: str, component: str = "main",
            *, gate: Gate = Gate.ALLOWED, meta_changes: dict[str, Any] | None = None) -> Release:
    """One real `.deb` into the catalog and blob store, with the meta the hub's adapter gives it."""
    record = record_of(deb, suite, component)
    meta = {**release_meta(record), **(meta_changes or {})}
    file = upstream_file(record, "http://127.0.0.1:9/")
    release = Release(channel=channel, name=record.name, display_name=record.name, version=record.version,
                      gate=gate, meta=meta)
    session.add(release)
    sha = blobs.put_file(deb)
    assert sha == file.sha256
    release.artifacts.append(Artifact(filename=file.filename, sha256=sha, size=file.size,
                                      state=ArtifactState.STORED, meta=dict(file.meta)))
    session.flush()
    return release
