"""The DB-backed queue, on SQLite and on a real PostgreSQL (the db_url fixture)."""

from __future__ import annotations

import multiprocessing
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from reservoir.db import Database, open_database
from reservoir.errors import ReservoirError
from sessions.inventory import GpuInfo, NodeInventory, sync_inventory
from sessions.models import RequestState, SchedAllocation
from sessions.queue import SchedulerConfig, release, run_pass, set_quota, submit, tickets
from sessions.resources import parse_request

CONFIG = SchedulerConfig(default_policy="fgd-bf", max_wait=timedelta(minutes=5), seed=0)


def node(name: str, gpus: int, cpu: int = 32, mem_gib: int = 128, model: str = "A100") -> NodeInventory:
    infos = tuple(GpuInfo(i, model, f"GPU-{name}-{i}", 40960, "disabled") for i in range(gpus))
    return NodeInventory(name, cpu * 1000, mem_gib * 1024, infos, "declared")


class Clock:
    """A settable time, so waiting bounds are tested without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


def ask(db: Database, user: str, *items: str, clock: Clock | None = None, priority: int = 0, config: SchedulerConfig = CONFIG):
    kwargs = {"now": clock} if clock is not None else {}
    return submit(db, user, parse_request(list(items)), config=config, priority=priority, **kwargs)


def test_a_request_that_fits_is_placed_at_once(database: Database) -> None:
    sync_inventory(database, [node("n1", 2)])
    ticket = ask(database, "alice", "cuda.shares=0.5", "cpu=2", "mem=8g")
    assert ticket.state == RequestState.PLACED and ticket.node == "n1"
    assert len(ticket.devices) == 1 and ticket.devices[0][1] == 500
    whole = ask(database, "bob", "cuda.shares=2")
    assert whole.state == RequestState.QUEUED  # only one whole GPU is left


def test_shares_pack_onto_one_gpu_and_release_lets_the_next_in(database: Database) -> None:
    sync_inventory(database, [node("n1", 1)])
    first = ask(database, "alice", "cuda.shares=0.5")
    second = ask(database, "bob", "cuda.shares=0.5")
    third = ask(database, "carol", "cuda.shares=0.3")
    assert first.devices[0][0] == second.devices[0][0]
    assert third.state == RequestState.QUEUED
    placed = release(database, first.id, config=CONFIG)
    assert [t.id for t in placed] == [third.id]


def test_priorities_go_first(database: Database) -> None:
    sync_inventory(database, [node("n1", 1)])
    blocker = ask(database, "x", "cuda.shares=1")
    low = ask(database, "low", "cuda.shares=1", priority=0)
    high = ask(database, "high", "cuda.shares=1", priority=5)
    assert low.state == high.state == RequestState.QUEUED
    assert [t.id for t in release(database, blocker.id, config=CONFIG)] == [high.id]


def test_a_quota_holds_a_user_back_without_blocking_others(database: Database) -> None:
    sync_inventory(database, [node("n1", 4)])
    set_quota(database, "alice", 1000)
    first = ask(database, "alice", "cuda.shares=0.75")
    over = ask(database, "alice", "cuda.shares=0.5")
    other = ask(database, "bob", "cuda.shares=0.5")
    assert first.state == RequestState.PLACED
    assert over.state == RequestState.QUEUED
    assert other.state == RequestState.PLACED
    assert [t.id for t in release(database, first.id, config=CONFIG)] == [over.id]


def test_backfill_is_bounded_a_waiting_large_request_gets_a_reservation(database: Database) -> None:
    sync_inventory(database, [node("n1", 2)])
    clock = Clock()
    holders = [ask(database, f"u{i}", "cuda.shares=0.5", clock=clock) for i in range(2)]
    assert all(h.state == RequestState.PLACED for h in holders)
    large = ask(database, "big", "cuda.shares=2", clock=clock)
    assert large.state == RequestState.QUEUED
    # Within the bound, small requests backfill the free GPU ahead of the large one.
    clock.advance(1)
    small = ask(database, "small", "cuda.shares=0.5", clock=clock)
    assert small.state == RequestState.PLACED
    # Past the bound the large request holds a reservation: nothing smaller jumps ahead ...
    clock.advance(10)
    late = ask(database, "late", "cuda.shares=0.25", clock=clock)
    assert late.state == RequestState.QUEUED
    # ... and as the holders leave, the large one is placed first.
    for ticket in (*holders, small):
        placed = release(database, ticket.id, config=CONFIG, now=clock)
    assert [t.id for t in placed][:1] == [large.id]


def test_state_survives_a_restart(db_url: str) -> None:
    db = open_database(db_url)
    sync_inventory(db, [node("n1", 1)])
    placed = ask(db, "alice", "cuda.shares=0.7")
    waiting = ask(db, "bob", "cuda.shares=0.7")
    db.dispose()
    again = open_database(db_url)
    try:
        by_id = {t.id: t for t in tickets(again)}
        assert by_id[placed.id].state == RequestState.PLACED
        assert by_id[waiting.id].state == RequestState.QUEUED
        assert run_pass(again, config=CONFIG) == []  # the restarted process sees the GPU as held
        assert [t.id for t in release(again, placed.id, config=CONFIG)] == [waiting.id]
    finally:
        again.dispose()


def test_requests_no_node_can_ever_hold_are_refused_and_nothing_is_stored(database: Database) -> None:
    sync_inventory(database, [node("n1", 2)])
    with pytest.raises(ReservoirError, match="can ever hold"):
        ask(database, "alice", "cuda.shares=4")
    with pytest.raises(ReservoirError, match="can ever hold"):
        ask(database, "alice", "cuda.shares=1", "cuda.model=H100")
    with pytest.raises(ReservoirError, match="already released"):
        t = ask(database, "alice", "cuda.shares=1")
        release(database, t.id, config=CONFIG)
        release(database, t.id, config=CONFIG)
    assert [t.state for t in tickets(database, include_released=True)] == [RequestState.RELEASED]


def _race(db_url: str, user: str, barrier: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue) -> None:  # type: ignore[name-defined]
    db = open_database(db_url)
    barrier.wait()
    ticket = submit(db, user, parse_request(["cuda.shares=0.5"]), config=CONFIG)
    out.put((user, ticket.state.value))
    db.dispose()


def test_racing_processes_never_share_the_last_half_gpu(db_url: str) -> None:
    db = open_database(db_url)
    sync_inventory(db, [node("n1", 1)])
    ask(db, "owner", "cuda.shares=0.5")  # half of the only GPU is taken
    ctx = multiprocessing.get_context("spawn")
    racers = 4
    barrier, out = ctx.Barrier(racers), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(db_url, f"r{i}", barrier, out)) for i in range(racers)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(state for _, state in results) == ["placed"] + ["queued"] * (racers - 1)
    with db.session() as session:
        assert session.scalar(select(func.sum(SchedAllocation.milli))) == 1000
    db.dispose()
