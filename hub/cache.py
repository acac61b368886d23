"""What syncs remember about upstreams, so an unchanged upstream costs little.

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

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

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
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class FileMetadata(Base):
    __tablename__ = "hub_file_metadata"

    file_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    metadata_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
