"""Why a queued session waits, in words: computed from the queue's rows, never guessed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sessions.models import RequestState, SchedAllocation, SchedDevice, SchedNode, SchedQuota, SchedRequest
from sessions.queue import SchedulerConfig, request_of
from sessions.resources import MILLI_PER_GPU, Request


@dataclass(frozen=True)
class DeviceFree:
    node: str
    uuid: str
    model: str
    free_milli: int


@dataclass(frozen=True)
class NodeFree:
    name: str
    cpu_milli: int
    mem_mib: int


@dataclass(frozen=True)
class Reservation:
    """An older request of at least this priority that has waited past max_wait: nothing may pass it."""

    label: str  # e.g. "session 41"
    priority: int
    since: datetime


def _shares(milli: int) -> str:
    return f"{milli / MILLI_PER_GPU:.2f}"


def waiting_reason(
    task: Request,
    user: str,
    held_milli: int,
    quota_milli: int | None,
    nodes: list[NodeFree],
    devices: list[DeviceFree],
    reservation: Reservation | None,
) -> str:
    """The first thing that keeps `task` from being placed: quota, a reservation ahead, or room."""
    if quota_milli is not None and held_milli + task.total_gpu_milli > quota_milli:
        return f"waiting: quota: {user} holds {_shares(held_milli)} of {_shares(quota_milli)} shares"
    if reservation is not None:
        return (
            f"waiting: behind {reservation.label} (priority {reservation.priority}), "
            f"reserved since {reservation.since.astimezone(timezone.utc):%H:%M}"
        )
    roomy = [n for n in nodes if n.cpu_milli >= task.cpu_milli and n.mem_mib >= task.mem_mib]
    if not roomy:
        best = max(nodes, key=lambda n: (n.cpu_milli, n.mem_mib), default=None)
        most = f"; most free: cpu {best.cpu_milli / 1000:g}, mem {best.mem_mib}m on {best.name}" if best else ""
        return f"waiting: no node with cpu {task.cpu_milli / 1000:g} and mem {task.mem_mib}m free{most}"
    if task.num_gpu == 0:
        return "waiting: for the next scheduling pass"
    names = {n.name for n in roomy}
    usable = [d for d in devices if d.node in names and (not task.gpu_models or d.model in task.gpu_models)]
    what = f" {'|'.join(task.gpu_models)}" if task.gpu_models else ""
    if task.is_sharing:
        best_device = max(usable, key=lambda d: d.free_milli, default=None)
        largest = f"; largest free share {_shares(best_device.free_milli)} on {best_device.node}" if best_device else ""
        return f"waiting: no{what} GPU with {_shares(task.gpu_milli)} free{largest}"
    whole: dict[str, int] = {}
    for d in usable:
        whole[d.node] = whole.get(d.node, 0) + (d.free_milli == MILLI_PER_GPU)
    node, count = max(whole.items(), key=lambda kv: kv[1], default=("", 0))
    most = f"; most is {count} on {node}" if node else ""
    return f"waiting: no node with {task.num_gpu} free{what} GPUs{most}"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def explain(session: Session, request_id: int, config: SchedulerConfig, now: datetime, labels: dict[int, str]) -> str:
    """`waiting_reason` for a queued request, from the database as it is now; `labels` names requests (request id -> "session 41")."""
    row = session.get(SchedRequest, request_id)
    if row is None or row.state != RequestState.QUEUED:
        return ""
    task = request_of(row)
    held = session.scalar(
        select(func.coalesce(func.sum(SchedAllocation.milli), 0))
        .join(SchedRequest, SchedRequest.id == SchedAllocation.request_id)
        .where(SchedRequest.state == RequestState.PLACED, SchedRequest.user == row.user)
    )
    quota_row = session.get(SchedQuota, row.user)
    quota = quota_row.max_gpu_milli if quota_row is not None else config.default_quota_milli
    reservation = None
    ahead = session.scalars(
        select(SchedRequest)
        .where(
            SchedRequest.state == RequestState.QUEUED,
            SchedRequest.resource_group == row.resource_group,
            SchedRequest.priority >= row.priority,
            SchedRequest.id != row.id,
        )
        .order_by(SchedRequest.priority.desc(), SchedRequest.submitted_at, SchedRequest.id)
    )
    for other in ahead:
        submitted = _aware(other.submitted_at)
        if (other.priority > row.priority or submitted <= _aware(row.submitted_at)) and now - submitted >= config.max_wait:
            label = labels.get(other.id, f"request {other.id}")
            reservation = Reservation(label, other.priority, submitted + config.max_wait)
            break
    nodes_rows = list(
        session.scalars(select(SchedNode).where(SchedNode.resource_group == row.resource_group, SchedNode.online))
    )
    placed = list(
        session.scalars(
            select(SchedRequest).where(
                SchedRequest.state == RequestState.PLACED, SchedRequest.node_id.in_([n.id for n in nodes_rows])
            )
        )
    )
    cpu = {n.id: n.cpu_milli for n in nodes_rows}
    mem = {n.id: n.mem_mib for n in nodes_rows}
    used: dict[int, int] = {}
    for other in placed:
        cpu[other.node_id] -= other.cpu_milli  # type: ignore[index]
        mem[other.node_id] -= other.mem_mib  # type: ignore[index]
        for alloc in other.allocations:
            used[alloc.device_id] = used.get(alloc.device_id, 0) + alloc.milli
    nodes = [NodeFree(n.name, cpu[n.id], mem[n.id]) for n in nodes_rows]
    devices = [
        DeviceFree(n.name, d.uuid, d.model, MILLI_PER_GPU - used.get(d.id, 0))
        for n in nodes_rows
        for d in session.scalars(select(SchedDevice).where(SchedDevice.node_id == n.id).order_by(SchedDevice.slot))
    ]
    return waiting_reason(task, row.user, int(held or 0), quota, nodes, devices, reservation)


__all__ = ["DeviceFree", "NodeFree", "Reservation", "explain", "waiting_reason"]
