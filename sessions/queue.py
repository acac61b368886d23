"""The database-backed request queue: priorities, per-user quotas, backfill with a bounded wait.

Every decision happens in one write transaction (SQLite: BEGIN IMMEDIATE;
PostgreSQL: the group's node rows locked FOR UPDATE before anything is
read), so two processes racing for the last half GPU are serialised and
only one of them gets it. Nothing is kept in memory between calls: the
queue, the allocations and the quotas are rows, and a restarted process
carries on where the last one stopped.

A pass walks queued requests by priority, then age. One that does not fit
is skipped so smaller ones can backfill behind it, until it has waited
longer than ``max_wait``: from then on it holds a reservation and nothing
of its priority or lower is placed before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session, selectinload

from reservoir.db import Database
from reservoir.errors import ReservoirError
from sessions.models import RequestState, SchedAllocation, SchedDevice, SchedNode, SchedQuota, SchedRequest
from sessions.placement import make_policy
from sessions.placement.base import ClusterState, NodeSpec
from sessions.resources import MILLI_PER_GPU, Request

MIX_WINDOW = 1000  # recent requests FGD measures fragmentation against


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class SchedulerConfig:
    policies: dict[str, str] = field(default_factory=dict)  # resource group -> policy name
    default_policy: str = "fgd-bf"
    max_wait: timedelta = timedelta(minutes=10)
    default_quota_milli: int | None = None  # None: unlimited
    seed: int | None = None

    def policy_for(self, group: str) -> str:
        return self.policies.get(group, self.default_policy)


@dataclass(frozen=True)
class Ticket:
    """Where a request stands: queued, or placed on a node's devices."""

    id: int
    user: str
    state: RequestState
    node: str | None = None
    devices: tuple[tuple[str, int], ...] = ()  # (device UUID, milli)


@dataclass
class _GroupView:
    """A group's nodes as a ClusterState, with the DB ids behind each slot."""

    state: ClusterState
    node_ids: list[int]
    device_ids: list[list[int]]
    device_uuids: list[list[str]]


def _aware(moment: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def request_of(row: SchedRequest) -> Request:
    return Request(row.gpu_milli, row.num_gpu, row.cpu_milli, row.mem_mib, tuple(row.gpu_models or ()))


def _lock_group(session: Session, db: Database, group: str) -> list[SchedNode]:
    query = (
        select(SchedNode)
        .where(SchedNode.resource_group == group, SchedNode.online)
        .order_by(SchedNode.id)
        .options(selectinload(SchedNode.devices))  # one query for every node's devices, not one per node
    )
    if not db.is_sqlite:
        query = query.with_for_update()
    return list(session.scalars(query))


def _group_view(session: Session, nodes: list[SchedNode]) -> _GroupView:
    specs, device_ids, uuids = [], [], []
    for node in nodes:
        devices = sorted(node.devices, key=lambda d: d.slot)
        model = devices[0].model if devices else ""
        specs.append(NodeSpec(node.name, node.cpu_milli, node.mem_mib, len(devices), model))
        device_ids.append([d.id for d in devices])
        uuids.append([d.uuid for d in devices])
    state = ClusterState(specs)
    index = {node.id: i for i, node in enumerate(nodes)}
    slot_of = {dev: (i, s) for i, ids in enumerate(device_ids) for s, dev in enumerate(ids)}
    placed = session.scalars(
        select(SchedRequest)
        .where(SchedRequest.state == RequestState.PLACED, SchedRequest.node_id.in_(list(index)))
        .options(selectinload(SchedRequest.allocations))
    )
    for row in placed:
        i = index[row.node_id]  # type: ignore[index]
        state.cpu_free[i] -= row.cpu_milli
        state.mem_free[i] -= row.mem_mib
        for alloc in row.allocations:
            n, s = slot_of[alloc.device_id]
            state.free[n, s] -= alloc.milli
    return _GroupView(state, [n.id for n in nodes], device_ids, uuids)


def _held_milli(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(SchedRequest.user, func.sum(SchedAllocation.milli))
        .join(SchedAllocation, SchedAllocation.request_id == SchedRequest.id)
        .where(SchedRequest.state == RequestState.PLACED)
        .group_by(SchedRequest.user)
    )
    return {user: int(total or 0) for user, total in rows}


def _recent_mix(session: Session, group: str) -> list[Request]:
    rows = session.scalars(
        select(SchedRequest).where(SchedRequest.resource_group == group).order_by(SchedRequest.id.desc()).limit(MIX_WINDOW)
    )
    return [request_of(r) for r in rows]


def schedule_pass(session: Session, db: Database, group: str, config: SchedulerConfig, now: datetime) -> list[int]:
    """Place what can be placed in `group`; returns the ids placed. Call inside a write transaction."""
    nodes = _lock_group(session, db, group)
    queued = list(
        session.scalars(
            select(SchedRequest)
            .where(SchedRequest.state == RequestState.QUEUED, SchedRequest.resource_group == group)
            .order_by(SchedRequest.priority.desc(), SchedRequest.submitted_at, SchedRequest.id)
            .options(selectinload(SchedRequest.allocations))  # empty, but loaded: appending then needs no query per row
        )
    )
    if not queued or not nodes:
        return []
    view = _group_view(session, nodes)
    policy = make_policy(config.policy_for(group), seed=config.seed, workload=_recent_mix(session, group))
    held = _held_milli(session)
    quotas = {q.user: q.max_gpu_milli for q in session.scalars(select(SchedQuota))}
    placed: list[int] = []
    targets: list[dict[str, int]] = []  # request id -> node id
    allocations: list[dict[str, int]] = []
    reserved_priority: int | None = None
    with session.no_autoflush:
        for row in queued:
            if reserved_priority is not None and row.priority <= reserved_priority:
                break
            task = request_of(row)
            quota = quotas.get(row.user, config.default_quota_milli)
            if quota is not None and held.get(row.user, 0) + task.total_gpu_milli > quota:
                continue  # waits for the user's own sessions to end; blocks nobody else
            choice = policy.choose(view.state, task, view.state.feasible(task))
            if choice is None:
                if now - _aware(row.submitted_at) >= config.max_wait:
                    reserved_priority = row.priority
                continue
            view.state.apply(task, choice)
            policy.placed(view.state, task, choice)
            for slot in choice.gpus:
                allocations.append({"request_id": row.id, "device_id": view.device_ids[choice.node][slot], "milli": choice.milli_per_gpu})
            held[row.user] = held.get(row.user, 0) + task.total_gpu_milli
            placed.append(row.id)
            targets.append({"rid": row.id, "nid": view.node_ids[choice.node]})
    _write_placements(session, [r for r in queued if r.id in set(placed)], targets, allocations, now)
    return placed


def _write_placements(
    session: Session, rows: list[SchedRequest], targets: list[dict[str, int]], allocations: list[dict[str, int]], now: datetime
) -> None:
    """The pass's decisions in two executemany statements (UPDATE, INSERT) instead of an ORM flush object by object,
    which was most of a 1,000-request pass (benchmarks/sessions.py)."""
    session.flush()  # what the caller changed (a new or released request) goes first
    if not rows:
        return
    table = SchedRequest.__table__
    session.execute(
        update(table)
        .where(table.c.id == bindparam("rid"))
        .values(state=RequestState.PLACED, node_id=bindparam("nid"), placed_at=now),
        targets,
    )
    if allocations:
        session.execute(insert(SchedAllocation.__table__), allocations)
    for row in rows:
        session.expire(row)  # read again from the database when next used


def _tickets(session: Session, ids: list[int]) -> list[Ticket]:
    """Tickets of the requests a pass placed, with names read in two queries (not two lazy loads per row)."""
    if not ids:
        return []
    found = session.scalars(
        select(SchedRequest)
        .where(SchedRequest.id.in_(ids))
        .options(selectinload(SchedRequest.allocations))
        .execution_options(populate_existing=True)
    )
    order = {rid: i for i, rid in enumerate(ids)}
    rows = sorted(found, key=lambda r: order[r.id])
    nodes = dict(session.execute(select(SchedNode.id, SchedNode.name)).all())
    device_ids = {a.device_id for r in rows for a in r.allocations}
    uuids = dict(session.execute(select(SchedDevice.id, SchedDevice.uuid).where(SchedDevice.id.in_(device_ids))).all())
    return [
        Ticket(id=r.id, user=r.user, state=r.state, node=nodes.get(r.node_id) if r.node_id is not None else None,
               devices=tuple((uuids[a.device_id], a.milli) for a in r.allocations))
        for r in rows
    ]


def ticket_of(row: SchedRequest) -> Ticket:
    return Ticket(
        id=row.id,
        user=row.user,
        state=row.state,
        node=row.node.name if row.node is not None and row.state == RequestState.PLACED else None,
        devices=tuple((a.device.uuid, a.milli) for a in row.allocations),
    )


def _check_capacity(session: Session, group: str, task: Request) -> None:
    """Refuse a request no node of the group could ever hold, instead of queueing it forever."""
    nodes = list(session.scalars(select(SchedNode).where(SchedNode.resource_group == group, SchedNode.online)))
    if not nodes:
        raise ReservoirError(f"resource group {group!r} has no nodes", hint="declare nodes or run `reservoir gpus`")
    empty = ClusterState(
        [NodeSpec(n.name, n.cpu_milli, n.mem_mib, len(n.devices), n.devices[0].model if n.devices else "") for n in nodes]
    )
    if not empty.feasible(task).any():
        raise ReservoirError(
            f"no node in group {group!r} can ever hold cuda.shares={task.shares} cpu={task.cpu_milli / 1000:g} "
            f"mem={task.mem_mib}m{' on ' + '|'.join(task.gpu_models) if task.gpu_models else ''}",
            hint="ask for less, or for another resource group",
        )


def submit(
    db: Database,
    user: str,
    task: Request,
    *,
    config: SchedulerConfig,
    priority: int = 0,
    group: str = "default",
    label: str = "",
    now: Callable[[], datetime] = utcnow,
) -> Ticket:
    """Queue `task` and run a scheduling pass in the same transaction: placed at once when it fits."""
    if not user:
        raise ReservoirError("a request needs a user", hint="pass --user NAME")
    with db.write_transaction() as session:
        _check_capacity(session, group, task)
        moment = now()
        row = SchedRequest(
            user=user,
            resource_group=group,
            priority=priority,
            gpu_milli=task.gpu_milli,
            num_gpu=task.num_gpu,
            cpu_milli=task.cpu_milli,
            mem_mib=task.mem_mib,
            gpu_models=list(task.gpu_models),
            label=label,
            state=RequestState.QUEUED,
            submitted_at=moment,
        )
        session.add(row)
        session.flush()
        schedule_pass(session, db, group, config, moment)
        return ticket_of(row)


def release(
    db: Database, request_id: int, *, config: SchedulerConfig, now: Callable[[], datetime] = utcnow
) -> list[Ticket]:
    """End a placed request (or cancel a queued one) and place what now fits; returns those placed."""
    with db.write_transaction() as session:
        row = session.get(SchedRequest, request_id)
        if row is None:
            raise ReservoirError(f"no scheduler request {request_id}", hint="see `reservoir sched queue`")
        if row.state == RequestState.RELEASED:
            raise ReservoirError(f"scheduler request {request_id} is already released")
        moment = now()
        row.state, row.released_at = RequestState.RELEASED, moment
        row.allocations.clear()
        session.flush()
        placed = schedule_pass(session, db, row.resource_group, config, moment)
        return _tickets(session, placed)


def run_pass(db: Database, *, config: SchedulerConfig, group: str = "default", now: Callable[[], datetime] = utcnow) -> list[Ticket]:
    """A scheduling pass on its own (e.g. from a timer, so reservations take effect without new events)."""
    with db.write_transaction() as session:
        placed = schedule_pass(session, db, group, config, now())
        return _tickets(session, placed)


def set_quota(db: Database, user: str, shares_milli: int | None) -> None:
    with db.write_transaction() as session:
        row = session.get(SchedQuota, user)
        if shares_milli is None:
            if row is not None:
                session.delete(row)
            return
        if row is None:
            session.add(SchedQuota(user=user, max_gpu_milli=shares_milli))
        else:
            row.max_gpu_milli = shares_milli


def tickets(db: Database, *, include_released: bool = False) -> list[Ticket]:
    with db.session() as session:
        query = select(SchedRequest).order_by(SchedRequest.id)
        if not include_released:
            query = query.where(SchedRequest.state != RequestState.RELEASED)
        return [ticket_of(r) for r in session.scalars(query)]


def device_holders(db: Database) -> dict[str, list[tuple[str, int, int]]]:
    """Device UUID -> [(user, request id, milli)] for placed requests."""
    holders: dict[str, list[tuple[str, int, int]]] = {}
    with db.session() as session:
        rows = session.execute(
            select(SchedDevice.uuid, SchedRequest.user, SchedRequest.id, SchedAllocation.milli)
            .join(SchedAllocation, SchedAllocation.device_id == SchedDevice.id)
            .join(SchedRequest, SchedRequest.id == SchedAllocation.request_id)
            .where(SchedRequest.state == RequestState.PLACED)
        )
        for uuid, user, rid, milli in rows:
            holders.setdefault(uuid, []).append((user, rid, milli))
    return holders


__all__ = ["MILLI_PER_GPU", "SchedulerConfig", "Ticket", "release", "run_pass", "set_quota", "submit", "tickets"]
