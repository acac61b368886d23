"""What the hub keeps for an adapter between syncs, whichever ecosystem it is.

`AdapterStateRow`: per channel, key/value JSON an ecosystem's cache hooks
read and write through `downloader.base.AdapterState` (an APT channel's
verified InRelease and index blobs per suite; every adapter's last cursor).
An ecosystem with caches of its own shape keeps its own tables (PyPI:
`downloader.pypi.cache`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from downloader.base import AdapterState
from reservoir.db import Base
from reservoir.models import utcnow


class AdapterStateRow(Base):
    __tablename__ = "hub_adapter_state"

    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


def load_state(session: Session, channel_id: int) -> AdapterState:
    rows = session.scalars(select(AdapterStateRow).where(AdapterStateRow.channel_id == channel_id))
    return AdapterState({row.key: row.value for row in rows})


def save_state(session: Session, channel_id: int, state: AdapterState) -> None:
    """Write the keys a sync changed."""
    for key in sorted(state.changed):
        session.merge(AdapterStateRow(channel_id=channel_id, key=key, value=state.values[key], updated_at=utcnow()))
    state.changed.clear()
