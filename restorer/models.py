"""The site's record of imported bundles and of what is published."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from reservoir.db import Base
from reservoir.models import utcnow


class ImportedBundle(Base):
    __tablename__ = "imported_bundles"
    __table_args__ = (UniqueConstraint("hub_id", "seq", name="uq_imported_bundles_hub_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hub_id: Mapped[str] = mapped_column(String(64), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    base: Mapped[int] = mapped_column(Integer)
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    key_fingerprint: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    releases: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    blobs: Mapped[int] = mapped_column(Integer, default=0)


class HubKey(Base):
    """Which trusted key speaks for which hub: one key per hub id, one hub id per key.

    Bound on a hub's first import (or by `trust add` when the key file names its hub), so a
    second trusted hub cannot sign bundles in the first one's name.
    """

    __tablename__ = "hub_keys"

    hub_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    bound_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    bound_by: Mapped[str] = mapped_column(String(16), default="import")


class SiteGeneration(Base):
    """Catalog changes vs publishes: a publisher that died after an import is caught up on the next start."""

    __tablename__ = "site_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    catalog: Mapped[int] = mapped_column(Integer, default=0)
    published: Mapped[int] = mapped_column(Integer, default=0)


# `DirtyPage.leaf` for "every leaf": a full bundle re-bases, or the change is not known leaf by leaf.
ALL_LEAVES = "*"


class DirtyPage(Base):
    """A leaf an import changed, kept until a publish takes it: a kill between the two loses nothing.

    `catalog` is the `SiteGeneration.catalog` the import made; a publish takes the rows
    above `published` and deletes them. `kind` is the publisher's (or `*` for all), `leaf`
    its leaf key (or `*` for all of that kind's).
    """

    __tablename__ = "dirty_pages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    catalog: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    leaf: Mapped[str] = mapped_column(Text)
