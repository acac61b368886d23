"""Scheduler tables: nodes and their GPUs, queued/placed requests, their GPU allocations, quotas.

Everything the scheduler decides lives here, so a restarted process (or a
second one) sees the same queue and the same allocations.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from reservoir.db import Base
from reservoir.models import utcnow


class RequestState(str, enum.Enum):
    QUEUED = "queued"
    PLACED = "placed"
    RELEASED = "released"  # ended, or cancelled while queued


class SchedNode(Base):
    __tablename__ = "sched_nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    resource_group: Mapped[str] = mapped_column(String(64), default="default")
    cpu_milli: Mapped[int] = mapped_column(BigInteger)
    mem_mib: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16))  # "nvml" or "declared"
    online: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    devices: Mapped[list[SchedDevice]] = relationship(back_populates="node", order_by="SchedDevice.slot")


class SchedDevice(Base):
    __tablename__ = "sched_devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("sched_nodes.id"), index=True)
    slot: Mapped[int] = mapped_column(Integer)  # index on the node
    uuid: Mapped[str] = mapped_column(String(128), unique=True)
    model: Mapped[str] = mapped_column(String(128))
    memory_mib: Mapped[int] = mapped_column(BigInteger, default=0)
    # NVML facts (MIG mode and instances, utilization) as last probed.
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    node: Mapped[SchedNode] = relationship(back_populates="devices")


class SchedRequest(Base):
    __tablename__ = "sched_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(String(128), index=True)
    resource_group: Mapped[str] = mapped_column(String(64), default="default")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    gpu_milli: Mapped[int] = mapped_column(Integer)
    num_gpu: Mapped[int] = mapped_column(Integer)
    cpu_milli: Mapped[int] = mapped_column(BigInteger)
    mem_mib: Mapped[int] = mapped_column(BigInteger)
    gpu_models: Mapped[list[str]] = mapped_column(JSON, default=list)
    label: Mapped[str] = mapped_column(Text, default="")  # e.g. the session it is for
    state: Mapped[RequestState] = mapped_column(
        Enum(RequestState, name="sched_request_state", values_callable=lambda e: [m.value for m in e], native_enum=False, length=16),
        default=RequestState.QUEUED,
        index=True,
    )
    node_id: Mapped[int | None] = mapped_column(ForeignKey("sched_nodes.id"), nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    placed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    allocations: Mapped[list[SchedAllocation]] = relationship(back_populates="request", cascade="all, delete-orphan")
    node: Mapped[SchedNode | None] = relationship()


class SchedAllocation(Base):
    __tablename__ = "sched_allocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("sched_requests.id"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("sched_devices.id"), index=True)
    milli: Mapped[int] = mapped_column(Integer)
    request: Mapped[SchedRequest] = relationship(back_populates="allocations")
    device: Mapped[SchedDevice] = relationship()


class SchedQuota(Base):
    __tablename__ = "sched_quotas"

    user: Mapped[str] = mapped_column(String(128), primary_key=True)
    max_gpu_milli: Mapped[int] = mapped_column(BigInteger)


class SessionState(str, enum.Enum):
    QUEUED = "queued"  # waiting for its scheduler request to be placed
    STARTING = "starting"  # placed; its container is being created
    RUNNING = "running"
    ENDED = "ended"  # exited, failed, reclaimed or lost: see end_reason and exit_code
    REMOVED = "removed"  # ended and removed with `session rm`: kept for accounting, hidden from `ls`


class ComputeSession(Base):
    """A user's container session; its GPU shares are held by `request` while it is not ended."""

    __tablename__ = "compute_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(128))
    image: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16), default="interactive")  # or "batch"
    command: Mapped[list[str]] = mapped_column(JSON, default=list)
    request_id: Mapped[int] = mapped_column(ForeignKey("sched_requests.id"), index=True)
    state: Mapped[SessionState] = mapped_column(
        Enum(SessionState, name="compute_session_state", values_callable=lambda e: [m.value for m in e], native_enum=False, length=16),
        default=SessionState.QUEUED,
        index=True,
    )
    node: Mapped[str | None] = mapped_column(String(255), nullable=True)
    container_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    end_reason: Mapped[str] = mapped_column(Text, default="")
    # The container as it was asked of the engine (env, mounts, limits, device requests), for `info` and audits.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What it used, from engine stats and NVML: cpu_seconds, mem_peak_mib, gpu_util_pct, gpu_mem_mib.
    usage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_active_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    idle_warned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    request: Mapped[SchedRequest] = relationship()


class SessionUser(Base):
    """The uid a site user's containers run as (from the host's passwd when it has one, else allocated)."""

    __tablename__ = "session_users"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    uid: Mapped[int] = mapped_column(Integer, unique=True)
