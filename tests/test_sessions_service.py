"""The session service over the real queue and database (SQLite and PostgreSQL), with an in-memory engine.

The engine here is a fake that keeps containers in a dict: what is under test is
the service's rows, the queue's decisions and the words a waiting session shows,
on both databases. The real engine is in test_sessions_engine.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from reservoir.context import AppContext
from reservoir.home import create_home
from sessions.backend import ContainerSpec, ContainerState, EngineEvent, ExecResult, Usage
from sessions.mirror import Mirror
from sessions.models import ComputeSession, SessionState
from sessions.queue import SchedulerConfig
from sessions.resources import parse_request
from sessions.service import SessionService, sessions_config

GPU = "declared-node-a-0"  # a declared node's device (no UUID of its own)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


@dataclass
class FakeEngine:
    """Containers as a dict; `running` ones have pids (as NVML would list them)."""

    url: str | None
    boxes: dict[str, dict[str, Any]] = field(default_factory=dict)
    cpu_seconds: float = 1.5

    def create(self, spec: ContainerSpec) -> str:
        container_id = f"{self.url}-{spec.name}"
        self.boxes[container_id] = {"spec": spec, "running": False, "code": None}
        return container_id

    def start(self, container_id: str) -> None:
        self.boxes[container_id]["running"] = True

    def stop(self, container_id: str, timeout_s: int = 5) -> None:
        if container_id in self.boxes:
            self.boxes[container_id].update(running=False, code=137)

    def remove(self, container_id: str) -> None:
        self.boxes.pop(container_id, None)
        for key in [k for k, v in self.boxes.items() if v["spec"].name == container_id]:
            del self.boxes[key]

    def exec(self, container_id: str, command: list[str], user: str) -> ExecResult:
        return ExecResult(0, b"")

    def logs(self, container_id: str, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
        return iter(())

    def stats(self, container_id: str) -> Usage | None:
        found = self.boxes.get(container_id)
        return Usage(self.cpu_seconds, 64.0) if found and found["running"] else None  # as the engine: none once exited

    def pids(self, container_id: str) -> set[int]:
        found = self.boxes.get(container_id)
        return {4242} if found and found["running"] else set()

    def containers(self, site: str) -> list[ContainerState]:
        return [s for s in map(self.state, list(self.boxes)) if s is not None]

    def state(self, container_id: str) -> ContainerState | None:
        found = self.boxes.get(container_id)
        if found is None:
            return None
        session_id = int(found["spec"].labels["io.reservoir.session"])
        return ContainerState(container_id, session_id, found["running"], found["code"])

    def events(self, site: str) -> Iterator[EngineEvent]:
        return iter(())

    def has_gpu_runtime(self) -> bool:
        return False

    def import_image(self, tarball: str, name: str) -> str:
        return "sha256:0"

    def info(self) -> dict[str, Any]:
        return {"NCPU": 4, "MemTotal": 8 << 30}

    def close(self) -> None:
        pass


@dataclass
class FakeNvml:
    """The few pynvml calls the meter makes; one device with the given utilisation and one process."""

    util: int = 70
    used_bytes: int = 3 << 30
    pid: int = 4242
    calls: list[str] = field(default_factory=list)

    class NVMLError(Exception):
        pass

    def nvmlInit(self) -> None:
        self.calls.append("init")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        if uuid != GPU:
            raise self.NVMLError("Not Found")
        return uuid

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> Any:
        return type("Rates", (), {"gpu": self.util, "memory": 10})()

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[Any]:
        mine = type("Proc", (), {"pid": self.pid, "usedGpuMemory": self.used_bytes})()
        other = type("Proc", (), {"pid": 1, "usedGpuMemory": 5 << 30})()  # another session's: not counted
        return [mine, other]


NODES = """
[[scheduler.nodes]]
name = "node-a"
cpu = 4
mem = "8g"
gpus = 1
gpu_mem_mib = 16384
docker_host = "unix:///engine-a.sock"

[[scheduler.nodes]]
name = "node-b"
cpu = 4
mem = "8g"
gpus = 0
docker_host = "tcp://engine-b:2376"
"""


@pytest.fixture
def service(db_url: str, tmp_path: Path) -> Iterator[SessionService]:
    root = tmp_path / "site"
    create_home(root, "site")
    config = root / "reservoir.toml"
    config.write_text(config.read_text() + f'\n[database]\nurl = "{db_url}"\n' + NODES)
    app = AppContext(home_root=root)
    engines: dict[str | None, FakeEngine] = {}
    clock = Clock()
    nvml = FakeNvml()

    def factory(url: str | None) -> FakeEngine:
        return engines.setdefault(url, FakeEngine(url))

    scheduler = SchedulerConfig(max_wait=timedelta(minutes=5), seed=0)
    svc = SessionService(app, sessions_config(app, scheduler), factory, now=clock, nvml=lambda: nvml)  # type: ignore[arg-type]
    svc.sync_nodes()
    svc.clock, svc.engines, svc.fake_nvml = clock, engines, nvml  # type: ignore[attr-defined]
    yield svc
    app.close()


MIRROR = Mirror("http://127.0.0.1:1", "u", "", (), "")


def create(svc: SessionService, user: str, *resources: str, priority: int = 0) -> int:
    view = svc.create(user, "img", parse_request(resources), name="", kind="interactive", command=[], mirror=MIRROR,
                      priority=priority)
    return view.id


@pytest.fixture(autouse=True)
def _no_chown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Config files stay the test's own: the tests need not run as root."""
    monkeypatch.setattr("sessions.service._chown", lambda path, uid: None)


def test_a_request_behind_a_reservation_says_whose_priority_and_since_when(service: SessionService) -> None:
    clock: Clock = service.clock  # type: ignore[attr-defined]
    half = create(service, "alice", "cuda.shares=0.5", "cpu=1")
    assert service.view_by_id(half).state == "running"
    whole = create(service, "bob", "cuda.shares=1", "cpu=1", priority=5)
    assert service.view_by_id(whole).status == "waiting: no node with 1 free GPUs; most is 0 on node-a"

    clock.advance(6)  # past max_wait (5 min): bob's request now holds a reservation
    service.tick()
    quarter = create(service, "carol", "cuda.shares=0.25", "cpu=1", priority=5)
    view = service.view_by_id(quarter)
    assert view.state == "queued"  # a quarter would fit beside alice's half; the reservation keeps it back
    assert view.status == f"waiting: behind session {whole} (priority 5), reserved since 10:05"

    service.remove("alice", False, str(half))
    assert service.view_by_id(whole).state == "running"  # started by the release, first in line
    assert service.view_by_id(quarter).status == "waiting: no GPU with 0.25 free; largest free share 0.00 on node-a"


def test_sessions_land_on_the_engine_of_the_node_they_are_placed_on(service: SessionService) -> None:
    engines: dict[str | None, FakeEngine] = service.engines  # type: ignore[attr-defined]
    first = create(service, "alice", "cpu=4")
    second = create(service, "alice", "cpu=4")
    nodes = {service.view_by_id(first).node, service.view_by_id(second).node}
    assert nodes == {"node-a", "node-b"}  # the first filled its node; the second went to the other
    for session_id in (first, second):
        view = service.view_by_id(session_id)
        url = "unix:///engine-a.sock" if view.node == "node-a" else "tcp://engine-b:2376"
        assert [c["spec"].name for c in engines[url].boxes.values()].count(view.spec["name"]) == 1
    third = create(service, "alice", "cpu=1")
    assert service.view_by_id(third).status == "waiting: no node with cpu 1 and mem 1024m free; most free: cpu 0, mem 7168m on node-a"


def test_an_ended_session_shows_what_it_asked_for_and_used_gpu_from_nvml(service: SessionService) -> None:
    nvml: FakeNvml = service.fake_nvml  # type: ignore[attr-defined]
    session_id = create(service, "alice", "cuda.shares=0.5", "cpu=2", "mem=2g")
    assert service.meter_gpus() == [session_id]
    nvml.util, nvml.used_bytes = 30, 1 << 30
    service.tick()
    usage = service.view_by_id(session_id).usage
    assert usage["gpu_util_pct"] == 50.0 and usage["gpu_samples"] == 2  # the mean of 70 and 30
    assert usage["gpu_mem_peak_mib"] == 3072.0  # its own process's peak; the other pid's 5 GiB is not its

    service.remove("alice", False, str(session_id))
    view = service.view_by_id(session_id)
    assert (view.shares, view.cpu, view.mem_mib) == ("0.50", "2", 2048)
    assert view.usage["cpu_seconds"] == 1.5 and view.usage["mem_peak_mib"] == 64.0
    assert view.usage["gpu_util_pct"] == 50.0
    service.meter_gpus()
    assert service.view_by_id(session_id).usage["gpu_samples"] == 2  # an ended session is no longer sampled


def test_usage_is_sampled_while_it_runs_since_an_exited_container_has_no_stats(service: SessionService) -> None:
    session_id = create(service, "alice", "cpu=1")
    view = service.view_by_id(session_id)
    engine: FakeEngine = service.engines[service.engine_of(view.node or "")]  # type: ignore[attr-defined]
    container_id = next(k for k, v in engine.boxes.items() if v["spec"].name == view.spec["name"])
    engine.cpu_seconds = 2.0
    service.tick()
    engine.cpu_seconds = 3.0
    service.tick()
    engine.boxes[container_id].update(running=False, code=0)  # it exits between two passes
    service.on_event(EngineEvent("die", container_id, session_id, 0))
    ended = service.view_by_id(session_id)
    assert ended.state == "ended" and ended.usage["cpu_seconds"] == 3.0 and ended.usage["mem_peak_mib"] == 64.0


def test_remote_nodes_and_cpu_sessions_are_not_metered_by_this_machines_nvml(service: SessionService) -> None:
    nvml: FakeNvml = service.fake_nvml  # type: ignore[attr-defined]
    create(service, "alice", "cpu=4")
    create(service, "alice", "cpu=4")  # one of them on node-b, a tcp:// engine
    assert service.meter_gpus() == [] and nvml.calls == []


def test_idle_is_judged_by_the_gpu_where_nvml_can_tell(service: SessionService) -> None:
    clock: Clock = service.clock  # type: ignore[attr-defined]
    nvml: FakeNvml = service.fake_nvml  # type: ignore[attr-defined]
    config = service.config
    object.__setattr__(config, "idle_timeout", timedelta(minutes=30))
    object.__setattr__(config, "idle_warning", timedelta(minutes=5))
    session_id = create(service, "alice", "cuda.shares=0.5")
    engine: FakeEngine = service.engines["unix:///engine-a.sock"]  # type: ignore[attr-defined]
    nvml.util = 40
    for _ in range(4):
        clock.advance(15)
        # no CPU use at all: only the GPU is busy
        service.tick()
    assert service.view_by_id(session_id).state == "running"
    nvml.util = 0
    engine.cpu_seconds += 10  # CPU busy, GPU idle: idle where NVML can tell
    service.tick()
    clock.advance(31)
    service.tick()
    assert service.view_by_id(session_id).status.startswith("reclaimed: idle for 31 min")


def test_a_create_before_the_supervisors_first_sync_finds_the_nodes_itself(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    create_home(root, "site")
    config = root / "reservoir.toml"
    config.write_text(config.read_text() + f'\n[database]\nurl = "{db_url}"\n')  # no node declared: the local engine
    app = AppContext(home_root=root)
    try:
        svc = SessionService(app, sessions_config(app, SchedulerConfig(seed=0)), FakeEngine, nvml=lambda: None)  # type: ignore[arg-type]
        view = svc.view_by_id(create(svc, "alice", "cpu=1"))  # no sync_nodes() first, as a server just started
        assert view.state == "running" and view.node == svc.node_names()[0]
    finally:
        app.close()


def test_a_session_row_lives_in_the_configured_database(service: SessionService, db_url: str) -> None:
    session_id = create(service, "alice", "cpu=1")
    with service.db.session() as s:
        row = s.get_one(ComputeSession, session_id)
        assert row.state == SessionState.RUNNING and row.spec["user"].endswith(str(service.uid_of("alice")))
    assert service.app.home.db_url == db_url
