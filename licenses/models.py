"""Tables of license and security vetting: the scan cache, review decisions, advisories."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from reservoir.db import Base
from reservoir.models import utcnow


class LicenseScan(Base):
    """One scancode result per file content and scancode version, so no file is scanned twice."""

    __tablename__ = "license_scans"

    file_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    scanner_version: Mapped[str] = mapped_column(String(32), primary_key=True)
    # {"expression": SPDX or null, "matches": [...]} or {"error": "..."} / {"timeout": true}
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    scanned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LicenseDecision(Base):
    """An admin's review of a held release: who decided what, when and why."""

    __tablename__ = "license_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    who: Mapped[str] = mapped_column(String(128))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decision: Mapped[str] = mapped_column(String(16))  # approve | reject
    reason: Mapped[str] = mapped_column(Text)


class Advisory(Base):
    """One OSV record as imported (the whole record is kept: ranges are evaluated from it)."""

    __tablename__ = "security_advisories"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    modified: Mapped[str] = mapped_column(String(40), default="")
    withdrawn: Mapped[bool] = mapped_column(default=False)
    record: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
