"""The hub's record of the bundles it exported and of what the site holds, as far as the hub knows.

What the site holds is kept per release (`SiteRelease`) and per blob
(`SiteBlob`), so an export reads and writes only the rows its delta
touches instead of a whole-catalog document per bundle.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from reservoir.db import Base
from reservoir.models import utcnow

# "channel\x1fname\x1fversion": the longest channel, name and version the catalog allows, and two separators.
KEY_LENGTH = 128 + 255 + 128 + 2


class ExportedBundle(Base):
    __tablename__ = "exported_bundles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    base: Mapped[int] = mapped_column(Integer)
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    path: Mapped[str] = mapped_column(Text)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    payload_bytes: Mapped[int] = mapped_column(Integer, default=0)
    # Before transferer_0002, the whole site state as one document; now always {} (see SiteRelease).
    site_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # When this export read the catalog: the next one looks at releases updated since (less a margin).
    watermark: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SiteRelease(Base):
    """A release the site holds once it imported the bundles exported so far."""

    __tablename__ = "export_site_releases"

    key: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)  # channel\x1fname\x1fversion
    release_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    # The release's updated_at when it was exported: an equal one has not changed since.
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SiteBlob(Base):
    """A blob a held release refers to (the site has it)."""

    __tablename__ = "export_site_blobs"

    key: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
