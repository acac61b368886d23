"""The hub's record of the bundles it exported (what the site has, as far as the hub knows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from reservoir.db import Base
from reservoir.models import utcnow


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
    # What the site holds once it imported this bundle:
    # {"channel\x1fname\x1fversion": {"fp": record fingerprint, "blobs": [sha256, ...]}}
    site_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
