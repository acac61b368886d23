"""What PyPI syncs remember about upstreams, so an unchanged upstream costs little.

The tables (created by the hub's migrations hub_0001 and hub_0002) and the
`Ecosystem.load_caches` / `save_caches` hooks that read them into
`downloader.pypi.adapter.Caches` and write back what a sync changed:

- `UpstreamPage`: per channel and project, the last page's validators
  (ETag / Last-Modified), a digest of its bytes, its parsed files, the
  upstream's serial of that content and the serial the root index last listed;
- `UpstreamRoot`: per channel, the root index's validators and serial, and
  the options it was read for (a channel whose options changed asks every
  page once more);
- `FileMetadata`: per upstream file (by sha256), its core metadata and the
  blob that holds the raw METADATA, so no file is read twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from downloader.pypi.adapter import CachedMetadata, CachedPage, CachedRoot, Caches
from reservoir.db import Base
from reservoir.models import utcnow


class UpstreamPage(Base):
    __tablename__ = "hub_upstream_pages"
    __table_args__ = (UniqueConstraint("channel_id", "project", name="uq_hub_upstream_pages_channel_project"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), index=True)
    project: Mapped[str] = mapped_column(String(255))
    etag: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_modified: Mapped[str | None] = mapped_column(Text, nullable=True)
    digest: Mapped[str] = mapped_column(String(64))
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    serial: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    listed_serial: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class UpstreamRoot(Base):
    __tablename__ = "hub_upstream_roots"

    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True)
    etag: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_modified: Mapped[str | None] = mapped_column(Text, nullable=True)
    options_digest: Mapped[str] = mapped_column(String(64))
    serial: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class FileMetadata(Base):
    __tablename__ = "hub_file_metadata"

    file_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    metadata_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def load_caches(session: Session, channel_id: int) -> Caches:
    caches = Caches()
    for page in session.scalars(select(UpstreamPage).where(UpstreamPage.channel_id == channel_id)):
        caches.pages[page.project] = CachedPage(page.etag, page.last_modified, page.digest, page.files,
                                                page.serial, page.listed_serial)
    root = session.get(UpstreamRoot, channel_id)
    if root is not None:
        caches.root = CachedRoot(root.etag, root.last_modified, root.options_digest, root.serial, root.size)
    for row in session.scalars(select(FileMetadata)):
        caches.metadata[row.file_sha256] = CachedMetadata(row.metadata_sha256, row.fields)
    return caches


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    """Slices small enough for an IN (...) on every database."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def save_caches(session: Session, channel_id: int, caches: Caches) -> None:
    """Write what changed in the caches; new rows in bulk (an initial sync adds thousands)."""
    if caches.changed_pages:
        changed_pages = sorted(caches.changed_pages)
        rows: dict[str, UpstreamPage] = {}
        for chunk in _chunks(changed_pages):
            query = select(UpstreamPage).where(UpstreamPage.channel_id == channel_id, UpstreamPage.project.in_(chunk))
            rows.update((p.project, p) for p in session.scalars(query))
        fresh = []
        for project in changed_pages:
            entry = caches.pages[project]
            values = {"etag": entry.etag, "last_modified": entry.last_modified, "digest": entry.digest,
                      "files": entry.files, "serial": entry.serial, "listed_serial": entry.listed_serial}
            row = rows.get(project)
            if row is None:
                fresh.append({"channel_id": channel_id, "project": project, "fetched_at": utcnow(), **values})
            else:
                for key, value in values.items():
                    setattr(row, key, value)
        if fresh:
            session.execute(insert(UpstreamPage), fresh)
    if caches.root_changed and caches.root is not None:
        root = caches.root
        session.merge(UpstreamRoot(channel_id=channel_id, etag=root.etag, last_modified=root.last_modified,
                                   options_digest=root.options_digest, serial=root.serial, size=root.size,
                                   fetched_at=utcnow()))
    changed = sorted(caches.changed_metadata)
    if changed:
        known = {sha for chunk in _chunks(changed)
                 for sha in session.scalars(select(FileMetadata.file_sha256).where(FileMetadata.file_sha256.in_(chunk)))}
        new_rows: list[dict[str, Any]] = [
            {"file_sha256": sha, "metadata_sha256": caches.metadata[sha].metadata_sha256,
             "fields": caches.metadata[sha].fields}
            for sha in changed if sha not in known
        ]
        if new_rows:
            session.execute(insert(FileMetadata), new_rows)
        for sha in known:
            cached = caches.metadata[sha]
            session.merge(FileMetadata(file_sha256=sha, metadata_sha256=cached.metadata_sha256, fields=cached.fields))
