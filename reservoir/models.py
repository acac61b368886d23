"""The catalog every ecosystem shares: channels, releases and their files.

A *channel* is one curated mirror of one upstream (a PyPI index, an APT
distribution, ...). A *release* is one version of one package in a channel;
an *artifact* is one file of a release, stored as a blob named by its
sha256. Ecosystem-specific fields live in the JSON ``meta`` columns so the
core stays ecosystem-agnostic.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Enum, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from reservoir.db import Base


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ReleaseState(str, enum.Enum):
    ACTIVE = "active"  # selected by the latest sync
    REMOVED = "removed"  # no longer selected; kept until exported as removed


class Gate(str, enum.Enum):
    """Whether vetting lets a release leave the hub (and be served by a site)."""

    ALLOWED = "allowed"
    HELD = "held"  # waiting for an admin's review
    DENIED = "denied"  # license policy says no
    QUARANTINED = "quarantined"  # a security advisory says no


class ArtifactState(str, enum.Enum):
    PENDING = "pending"  # known upstream, not yet fetched
    STORED = "stored"  # in the blob store, hash verified
    FAILED = "failed"  # the last fetch failed; see Artifact.error


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, values_callable=lambda e: [m.value for m in e], native_enum=False, length=16)


class Channel(Base):
    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    upstream: Mapped[str] = mapped_column(Text)
    # Ecosystem options (requested packages, target environments, ...).
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    releases: Mapped[list[Release]] = relationship(back_populates="channel", cascade="all, delete-orphan")


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("channel_id", "name", "version", name="uq_releases_channel_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), index=True)
    # The ecosystem's normalized name (PEP 503 for PyPI), used for lookups.
    name: Mapped[str] = mapped_column(String(255), index=True)
    display_name: Mapped[str] = mapped_column(String(255))
    version: Mapped[str] = mapped_column(String(128))
    state: Mapped[ReleaseState] = mapped_column(_enum(ReleaseState, "release_state"), default=ReleaseState.ACTIVE)
    gate: Mapped[Gate] = mapped_column(_enum(Gate, "release_gate"), default=Gate.ALLOWED)
    gate_reason: Mapped[str] = mapped_column(Text, default="")
    declared_license: Mapped[str] = mapped_column(Text, default="")
    # Ecosystem metadata: dependencies, summary, requires-python, ...
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    channel: Mapped[Channel] = relationship(back_populates="releases")
    artifacts: Mapped[list[Artifact]] = relationship(back_populates="release", cascade="all, delete-orphan")


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("release_id", "filename", name="uq_artifacts_release_filename"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(512))
    url: Mapped[str] = mapped_column(Text, default="")
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    state: Mapped[ArtifactState] = mapped_column(_enum(ArtifactState, "artifact_state"), default=ArtifactState.PENDING)
    error: Mapped[str] = mapped_column(Text, default="")
    # Ecosystem fields: PyPI yanked / requires-python / upload-time / the
    # sha256 of the PEP 658 metadata blob; Debian control fields; ...
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    release: Mapped[Release] = relationship(back_populates="artifacts")


class Snapshot(Base):
    """What a sync selected from its upstream; the next sync diffs against it."""

    __tablename__ = "snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # {"name==version": [sha256, ...]} of every selected release.
    selection: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SyncRun(Base):
    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running|ok|failed
    added: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    downloaded_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    message: Mapped[str] = mapped_column(Text, default="")


class SchemaStamp(Base):
    """Which set of migration scripts the schema was last brought up to.

    Every command opens the database; comparing this one row with a hash of
    the installed migration scripts lets it skip loading Alembic (a large
    import) when nothing changed.
    """

    __tablename__ = "schema_stamp"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
