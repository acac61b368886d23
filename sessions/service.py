"""Sessions end to end: queue a request, start the container when it is placed, free its shares when it ends.

Every state change is a row change in one write transaction, so the API in several
workers, the supervisor and a restarted server agree on what runs. The engine is
the truth about containers: `reconcile` makes the rows agree with it (a container
that died frees its shares; one still running is adopted, never started twice).

[sessions] in reservoir.toml::

    docker_host = "unix:///run/docker.sock"   # the local engine (default: DOCKER_HOST, else the default socket)
    first_uid = 20000          # uids given to site users the host's passwd does not know
    default_cpu = 1            # when a session does not say -r cpu=
    default_mem = "1g"
    mirror_url = "http://site:8080"   # how containers reach the site (default: the URL the API was called on)
    hami_library = "/usr/local/vgpu/libvgpu.so"   # HAMi-core on the nodes, when the site has it
    idle_timeout_s = 3600      # end interactive sessions idle this long (0: never)
    idle_warning_s = 600       # warn in the session's log this long before

A declared node (``[[scheduler.nodes]]``) names its engine with ``docker_host``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pwd
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from reservoir.context import AppContext
from reservoir.errors import ConfigError, ReservoirError
from reservoir.models import Channel
from sessions.backend import Backend, ContainerState, EngineEvent, ExecResult, OverlayVolume, Usage
from sessions.enforcement import DeviceShare, HamiConfig
from sessions.gpu_usage import default_nvml, fold, sample_gpus
from sessions.inventory import NodeInventory, declared_nodes, local_node, probe_gpus, sync_inventory
from sessions.mirror import AptSource, Mirror, config_files
from sessions.models import ComputeSession, RequestState, SchedNode, SchedRequest, SessionState, SessionUser
from sessions.queue import SchedulerConfig, release, run_pass, submit
from sessions.resources import MILLI_PER_GPU, Request, parse_cpu, parse_mem
from sessions.spec import SessionPlan, container_spec
from sessions.waiting import explain

log = logging.getLogger("reservoir.sessions")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
KINDS = ("interactive", "batch")
LIVE = (SessionState.QUEUED, SessionState.STARTING, SessionState.RUNNING)
STARTING_GRACE = timedelta(minutes=2)  # longer than any create + start of a container


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))


class NotFound(ReservoirError):
    """No such session for this user (another user's session is reported the same way)."""


@dataclass(frozen=True)
class SessionsConfig:
    site_id: str
    state_dir: Path  # <home>/sessions
    scheduler: SchedulerConfig
    node_engines: dict[str, str | None]  # declared node name -> DOCKER_HOST (None: the local engine)
    local_engine: str | None = None
    first_uid: int = 20000
    default_cpu_milli: int = 1000
    default_mem_mib: int = 1024
    mirror_url: str | None = None
    hami: HamiConfig | None = None
    idle_timeout: timedelta | None = None
    idle_warning: timedelta = timedelta(minutes=10)

    @property
    def layer_dir(self) -> Path:
        return self.state_dir / "layer"

    def user_dir(self, user: str) -> Path:
        return self.state_dir / "users" / user

    def run_dir(self, session_id: int) -> Path:
        return self.state_dir / "run" / str(session_id)


def _seconds(section: dict[str, Any], key: str, default: float, where: str) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where}: [sessions] {key} must be a number of seconds, not {value!r}")
    return float(value)


def sessions_config(app: AppContext, scheduler: SchedulerConfig) -> SessionsConfig:
    home = app.home
    where = str(home.config_path)
    section = home.section("sessions")
    nodes = home.section("scheduler").get("nodes", [])
    engines = {str(n["name"]): (str(n["docker_host"]) if n.get("docker_host") else None) for n in nodes if isinstance(n, dict) and n.get("name")}
    idle = _seconds(section, "idle_timeout_s", 0, where)
    hami = section.get("hami_library")
    return SessionsConfig(
        site_id=home.instance_id or hashlib.sha256(str(home.root.resolve()).encode()).hexdigest()[:16],
        state_dir=home.root / "sessions",
        scheduler=scheduler,
        node_engines=engines,
        local_engine=str(section["docker_host"]) if section.get("docker_host") else None,
        first_uid=int(section.get("first_uid", 20000)),
        default_cpu_milli=parse_cpu(str(section.get("default_cpu", 1))),
        default_mem_mib=parse_mem(str(section.get("default_mem", "1g"))),
        mirror_url=str(section["mirror_url"]) if section.get("mirror_url") else None,
        hami=HamiConfig(str(hami)) if hami else None,
        idle_timeout=timedelta(seconds=idle) if idle else None,
        idle_warning=timedelta(seconds=_seconds(section, "idle_warning_s", 600, where)),
    )


@dataclass(frozen=True)
class SessionView:
    """What `session ls` and `session info` show."""

    id: int
    name: str
    user: str
    image: str
    kind: str
    state: str
    status: str  # in words: why it waits, where it runs, how it ended
    shares: str
    cpu: str
    mem_mib: int
    node: str | None
    devices: list[list[Any]]  # [uuid, shares]
    exit_code: int | None
    created_at: str
    started_at: str | None
    ended_at: str | None
    command: list[str]
    usage: dict[str, Any]
    spec: dict[str, Any]


def _iso(moment: datetime | None) -> str | None:
    aware = _aware(moment)
    return aware.isoformat(timespec="seconds") if aware else None


def sanitize(user: str) -> str:
    """A Docker-safe name for a site user (volume names allow [A-Za-z0-9_.-])."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", user)
    return clean if clean == user else f"{clean}-{hashlib.sha256(user.encode()).hexdigest()[:8]}"


@dataclass
class SessionService:
    app: AppContext
    config: SessionsConfig
    backend_factory: Callable[[str | None], Backend]
    now: Callable[[], datetime] = utcnow
    nvml: Callable[[], Any | None] = default_nvml  # the NVML module of this machine (None: not installed)
    _backends: dict[str, Backend] = field(default_factory=dict)

    @property
    def db(self) -> Any:
        return self.app.db

    # --- engines and inventory -------------------------------------------------

    def engine_of(self, node: str) -> str | None:
        return self.config.node_engines.get(node, self.config.local_engine)

    def backend(self, node: str) -> Backend:
        if node not in self._backends:
            self._backends[node] = self.backend_factory(self.engine_of(node))
        return self._backends[node]

    def is_local(self, node: str) -> bool:
        """Whether the node's engine runs on this machine (so this machine's NVML sees its GPUs)."""
        url = self.engine_of(node)
        return url is None or url.startswith("unix://")

    def node_names(self) -> list[str]:
        with self.db.session() as session:
            return list(session.scalars(select(SchedNode.name).where(SchedNode.online).order_by(SchedNode.name)))

    def sync_nodes(self) -> None:
        """Declared nodes; with none declared, the local engine is the one node (its GPUs from NVML)."""
        home = self.app.home
        nodes: list[NodeInventory] = declared_nodes(home.section("scheduler"), str(home.config_path))
        if not nodes:
            probe = probe_gpus()
            node = local_node(probe)
            if node is None:
                info = self.backend_factory(self.config.local_engine).info()
                node = NodeInventory(
                    socket.gethostname(), int(info.get("NCPU", os.cpu_count() or 1)) * 1000,
                    int(info.get("MemTotal", 0)) // (1024 * 1024), (), "engine",
                )
            nodes = [node]
        sync_inventory(self.db, nodes)

    # --- users -------------------------------------------------------------------

    def uid_of(self, user: str) -> int:
        with self.db.write_transaction() as session:
            row = session.get(SessionUser, user)
            if row is not None:
                return row.uid
            try:
                uid = pwd.getpwnam(user).pw_uid
            except KeyError:
                uid = -1
            taken = session.scalar(select(SessionUser).where(SessionUser.uid == uid)) if uid >= 1000 else True
            if taken:  # unknown to the host, a system account (never run as one), or already given out
                highest = session.scalar(select(func.max(SessionUser.uid)))
                uid = max(self.config.first_uid, (highest or 0) + 1)
            session.add(SessionUser(name=user, uid=uid))
            return uid

    # --- the overlay and the config folder ----------------------------------------

    def layer_path(self) -> Path:
        current = self.config.layer_dir / "current"
        if current.exists():
            return current.resolve()
        empty = self.config.layer_dir / "empty"
        empty.mkdir(parents=True, exist_ok=True)
        return empty

    def overlay_for(self, user: str, uid: int) -> OverlayVolume:
        base = self.config.user_dir(user)
        upper, work = base / "upper", base / "work"
        for path in (upper, work):
            path.mkdir(parents=True, exist_ok=True)
        base.chmod(0o700)  # only root (the engine) goes in: other users never see it
        _chown(upper, uid)
        lower = self.layer_path()
        name = f"reservoir-{self.config.site_id[:8]}-{sanitize(user)}-{lower.name}"
        return OverlayVolume(name, "/home/work/.local", str(lower), str(upper), str(work))

    def write_config(self, session_id: int, uid: int, mirror: Mirror) -> Path:
        """The session's mirror, kept for its start (mirror.json, root's), and the files its container mounts (etc/)."""
        run = self.config.run_dir(session_id)
        folder = run / "etc"
        folder.mkdir(parents=True, exist_ok=True)
        run.chmod(0o711)
        saved = run / "mirror.json"
        saved.write_text(json.dumps(asdict(mirror)))
        saved.chmod(0o600)
        for name, text in config_files(mirror).items():
            path = folder / name
            path.write_text(text)
            path.chmod(0o400)
            _chown(path, uid)
        folder.chmod(0o500)  # may hold the user's token: theirs only
        _chown(folder, uid)
        return folder

    def saved_mirror(self, session_id: int) -> Mirror:
        try:
            raw = json.loads((self.config.run_dir(session_id) / "mirror.json").read_text())
        except (OSError, ValueError):
            raise ReservoirError(
                f"session {session_id}: its mirror configuration is missing", hint="rm the session and create it again"
            ) from None
        raw["apt"] = tuple(AptSource(a["channel"], tuple(a["suites"]), tuple(a["components"])) for a in raw.get("apt", ()))
        return Mirror(**raw)

    def mirror_for(self, url: str, username: str, secret: str) -> Mirror:
        with self.db.session() as session:
            channels = list(session.scalars(select(Channel).where(Channel.kind == "apt").order_by(Channel.name)))
        apt = []
        for channel in channels:
            suites = channel.options.get("suites") or [channel.options.get("suite") or channel.name]
            components = channel.options.get("components") or ["main"]
            apt.append(AptSource(channel.name, tuple(map(str, suites)), tuple(map(str, components))))
        key_path = self.app.home.keys_dir / "apt-signing-key.asc"
        key = key_path.read_text() if key_path.exists() else ""
        return Mirror(self.config.mirror_url or url, username, secret, tuple(apt), key)

    # --- create, start ------------------------------------------------------------

    def create(
        self, user: str, image: str, task: Request, *, name: str, kind: str, command: list[str], mirror: Mirror, priority: int = 0
    ) -> SessionView:
        if kind not in KINDS:
            raise ReservoirError(f"unknown session type {kind!r}", hint="use --type interactive or --type batch")
        if kind == "batch" and not command:
            raise ReservoirError("a batch session needs a command", hint="put it after --: session create IMAGE --type batch -- CMD")
        if name and not NAME_RE.match(name):
            raise ReservoirError(f"session name {name!r} is not allowed", hint="use letters, digits, _ . - (up to 63)")
        if not image:
            raise ReservoirError("no image given", hint="session create IMAGE ...")
        task = Request(
            task.gpu_milli, task.num_gpu, task.cpu_milli or self.config.default_cpu_milli,
            task.mem_mib or self.config.default_mem_mib, task.gpu_models,
        )
        if name:
            with self.db.session() as session:
                clash = session.scalar(
                    select(ComputeSession.id).where(
                        ComputeSession.user == user, ComputeSession.name == name, ComputeSession.state.in_(LIVE)
                    )
                )
            if clash is not None:
                raise ReservoirError(f"you already have a session named {name} (id {clash})", hint="choose another --name or rm it")
        if not self.node_names():
            self.sync_nodes()  # a create before the supervisor's first sync (a server that has just started)
        uid = self.uid_of(user)
        ticket = submit(self.db, user, task, config=self.config.scheduler, priority=priority, label="session", now=self.now)
        with self.db.write_transaction() as session:
            row = ComputeSession(
                user=user, name=name, image=image, kind=kind, command=list(command), request_id=ticket.id,
                state=SessionState.QUEUED, created_at=self.now(),
            )
            session.add(row)
            session.flush()
            if not name:
                row.name = f"s{row.id}"
            session_id = row.id
            request = session.get_one(SchedRequest, ticket.id)
            request.label = f"session {session_id}"
        self.write_config(session_id, uid, mirror)
        self.start_placed()
        return self.view_by_id(session_id)

    def start_placed(self) -> list[int]:
        """Start every queued session whose request the scheduler has placed."""
        with self.db.session() as session:
            ready = list(
                session.scalars(
                    select(ComputeSession.id)
                    .join(SchedRequest, SchedRequest.id == ComputeSession.request_id)
                    .where(ComputeSession.state == SessionState.QUEUED, SchedRequest.state == RequestState.PLACED)
                    .order_by(ComputeSession.id)
                )
            )
        started = []
        for session_id in ready:
            if self._claim(session_id):
                self._start(session_id)
                started.append(session_id)
        return started

    def _claim(self, session_id: int) -> bool:
        # started_at marks the attempt: a start that outlives STARTING_GRACE was abandoned by a dead process.
        with self.db.write_transaction() as session:
            result = session.execute(
                update(ComputeSession)
                .where(ComputeSession.id == session_id, ComputeSession.state == SessionState.QUEUED)
                .values(state=SessionState.STARTING, started_at=self.now())
            )
            return bool(result.rowcount)

    def plan_of(self, session_id: int) -> tuple[str, SessionPlan]:
        with self.db.session() as session:
            row = session.get_one(ComputeSession, session_id)
            request = session.get_one(SchedRequest, row.request_id)
            node = request.node.name if request.node else ""
            shares = tuple(
                DeviceShare(a.device.uuid, a.milli, a.device.memory_mib)
                for a in sorted(request.allocations, key=lambda a: a.device.slot)
            )
            user, image, kind, command = row.user, row.image, row.kind, tuple(row.command or ())
            cpu, mem = request.cpu_milli, request.mem_mib
        uid = self.uid_of(user)
        config_dir = self.config.run_dir(session_id) / "etc"
        mirror = self.saved_mirror(session_id)
        plan = SessionPlan(
            session_id=session_id, site_id=self.config.site_id, user=user, uid=uid, image=image, kind=kind,
            command=command, cpu_milli=cpu, mem_mib=mem, shares=shares, overlay=self.overlay_for(user, uid),
            config_dir=str(config_dir), mirror=mirror, hami=self.config.hami,
        )
        return node, plan

    def _start(self, session_id: int) -> None:
        try:
            node, plan = self.plan_of(session_id)
            spec = container_spec(plan)
            backend = self.backend(node)
            backend.remove(spec.name)  # left by an abandoned attempt (the name is the session's)
            record = spec.as_record()
            record["gpu_runtime"] = bool(spec.device_ids) and backend.has_gpu_runtime()
            container_id = backend.create(spec)
            with self.db.write_transaction() as session:
                row = session.get_one(ComputeSession, session_id)
                row.container_id, row.node, row.spec = container_id, node, record
            backend.start(container_id)
        except ReservoirError as exc:
            log.warning("session %d could not start: %s", session_id, exc)
            self.end(session_id, None, f"failed to start: {exc}")
            return
        with self.db.write_transaction() as session:
            row = session.get_one(ComputeSession, session_id)
            if row.state == SessionState.STARTING:
                row.state, row.started_at, row.last_active_at = SessionState.RUNNING, self.now(), self.now()

    # --- end ------------------------------------------------------------------------

    def end(self, session_id: int, exit_code: int | None, reason: str, *, removed: bool = False) -> bool:
        """Mark a session ended and free its shares (once); returns whether this call ended it."""
        usage = None
        with self.db.session() as session:
            row = session.get(ComputeSession, session_id)
            if row is None:
                return False
            node, container_id, was_live = row.node, row.container_id, row.state in LIVE
        if was_live and node and container_id:
            usage = self.backend(node).stats(container_id)
        with self.db.write_transaction() as session:
            row = session.get_one(ComputeSession, session_id)
            ended_now = row.state in LIVE
            if ended_now:
                row.state, row.ended_at, row.exit_code, row.end_reason = SessionState.ENDED, self.now(), exit_code, reason
                if usage is not None:
                    row.usage = _with_usage(dict(row.usage or {}), usage)
            if removed:
                row.state = SessionState.REMOVED
            request_id = row.request_id
            request_state = session.get_one(SchedRequest, request_id).state
        if ended_now:
            shutil.rmtree(self.config.run_dir(session_id), ignore_errors=True)  # the token goes with it
            if request_state != RequestState.RELEASED:
                try:
                    release(self.db, request_id, config=self.config.scheduler, now=self.now)
                except ReservoirError:
                    pass  # another worker released it between our read and this call
            self.start_placed()
        return ended_now

    def remove(self, user: str, admin: bool, ref: str) -> SessionView:
        session_id = self.resolve(user, admin, ref)
        with self.db.session() as session:
            row = session.get_one(ComputeSession, session_id)
            node, container_id = row.node, row.container_id
        self.end(session_id, None, "removed by `session rm`", removed=True)  # before the engine's destroy event can
        if node and container_id:
            self.backend(node).remove(container_id)
        return self.view_by_id(session_id)

    # --- the engine's view -------------------------------------------------------------

    def on_event(self, event: EngineEvent) -> None:
        if event.session_id is None or event.action not in ("die", "oom", "destroy"):
            return
        with self.db.session() as session:
            row = session.get(ComputeSession, event.session_id)
            if row is None or row.state not in (SessionState.RUNNING, SessionState.STARTING):
                return
            if row.container_id and event.container_id and row.container_id != event.container_id:
                return  # an earlier attempt's container
        node = row.node or ""
        state = self.backend(node).state(event.container_id) if node else None
        if state is not None and state.running:
            return
        if event.action == "oom" or (state is not None and state.oom_killed):
            self.end(event.session_id, state.exit_code if state else None, "killed: out of memory (ask for more with -r mem=)")
        elif state is None:
            self.end(event.session_id, event.exit_code, "its container was removed outside Reservoir")
        else:
            self.end(event.session_id, state.exit_code, _exit_reason(state.exit_code))

    def reconcile(self) -> None:
        """Make the rows agree with the engines: adopt what runs, end what died, stop what nobody holds."""
        abandoned_before = self.now() - STARTING_GRACE
        with self.db.session() as session:
            rows = list(session.scalars(select(ComputeSession).where(ComputeSession.state.in_([SessionState.STARTING, SessionState.RUNNING]))))
            # A start in progress (maybe in another worker) is left alone until it is clearly abandoned.
            busy = {
                r.id for r in rows
                if r.state == SessionState.STARTING and (_aware(r.started_at) or abandoned_before) > abandoned_before
            }
            live = {r.id: (r.state, r.node, r.container_id) for r in rows if r.id not in busy}
            known = set(session.scalars(select(ComputeSession.id)))
        seen: set[int] = set()
        for node in self.node_names():
            try:
                containers = self.backend(node).containers(self.config.site_id)
            except ReservoirError as exc:
                log.warning("node %s: %s", node, exc)
                continue
            for container in containers:
                seen.add(container.session_id)
                if container.session_id in busy:
                    continue
                self._reconcile_one(node, container, live.get(container.session_id), container.session_id in known)
        for session_id, (state, node, _cid) in live.items():
            if session_id not in seen and node:
                self.end(session_id, None, "its container was removed outside Reservoir" if state == SessionState.RUNNING
                         else "its start was abandoned (the server stopped); create it again")
        self.start_placed()

    def _reconcile_one(self, node: str, container: ContainerState, live: tuple[SessionState, str | None, str | None] | None, known: bool) -> None:
        if live is None:
            if container.running:
                # Its session ended (shares freed) or is not ours: a container may not run unaccounted.
                log.warning("stopping container %s of %s session %d", container.id[:12], "ended" if known else "unknown", container.session_id)
                self.backend(node).stop(container.id)
            return
        state, _node, container_id = live
        if container_id and container.id != container_id:
            return
        if container.running:
            if state == SessionState.STARTING or container_id is None:
                with self.db.write_transaction() as session:
                    row = session.get_one(ComputeSession, container.session_id)
                    row.state, row.container_id, row.node = SessionState.RUNNING, container.id, node
                    row.started_at = row.started_at or self.now()
            return
        if state == SessionState.STARTING:
            self.backend(node).remove(container.id)  # created by a process that died before starting it
            self.end(container.session_id, None, "its start was abandoned (the server stopped); create it again")
            return
        code = container.exit_code
        self.end(container.session_id, code, "killed: out of memory (ask for more with -r mem=)" if container.oom_killed else _exit_reason(code))

    def tick(self) -> None:
        """What the supervisor does every few seconds: reservations, reconcile, idle policy."""
        for group in self._groups():
            run_pass(self.db, config=self.config.scheduler, group=group, now=self.now)
        self.reconcile()
        self.meter_usage()
        self.meter_gpus()
        if self.config.idle_timeout is not None:
            self.reclaim_idle()

    def _groups(self) -> list[str]:
        with self.db.session() as session:
            return list(session.scalars(select(SchedNode.resource_group).distinct()))

    # --- GPU accounting ----------------------------------------------------------------------

    def meter_usage(self) -> None:
        """CPU time and memory of each running session, sampled every pass: a container that has exited has no stats."""
        with self.db.session() as session:
            rows = [
                (r.id, r.node, r.container_id)
                for r in session.scalars(select(ComputeSession).where(ComputeSession.state == SessionState.RUNNING))
            ]
        for session_id, node, container_id in rows:
            if not node or not container_id:
                continue
            stats = self.backend(node).stats(container_id)
            if stats is None:
                continue
            with self.db.write_transaction() as session:
                row = session.get_one(ComputeSession, session_id)
                if row.state == SessionState.RUNNING:
                    row.usage = _with_usage(dict(row.usage or {}), stats)

    def meter_gpus(self) -> list[int]:
        """Sample NVML for running sessions with GPUs on local nodes; returns the sessions sampled."""
        with self.db.session() as session:
            rows = [
                (r.id, r.node, r.container_id, [a.device.uuid for a in r.request.allocations])
                for r in session.scalars(select(ComputeSession).where(ComputeSession.state == SessionState.RUNNING))
            ]
        rows = [r for r in rows if r[1] and r[2] and r[3] and self.is_local(r[1])]
        module = self.nvml() if rows else None
        if module is None:
            return []
        sampled = []
        for session_id, node, container_id, uuids in rows:
            assert node is not None and container_id is not None
            samples = sample_gpus(module, uuids, self.backend(node).pids(container_id))
            if not samples:
                continue
            with self.db.write_transaction() as session:
                row = session.get_one(ComputeSession, session_id)
                if row.state == SessionState.RUNNING:
                    row.usage = fold(dict(row.usage or {}), samples)
                    sampled.append(session_id)
        return sampled

    # --- idle reclaim ----------------------------------------------------------------------

    def reclaim_idle(self) -> list[int]:
        """End interactive sessions idle past the timeout, after a warning in their log."""
        timeout = self.config.idle_timeout
        assert timeout is not None
        now = self.now()
        with self.db.session() as session:
            rows = [
                (r.id, r.node, r.container_id, _aware(r.last_active_at) or now, _aware(r.idle_warned_at), dict(r.usage or {}))
                for r in session.scalars(
                    select(ComputeSession).where(ComputeSession.state == SessionState.RUNNING, ComputeSession.kind == "interactive")
                )
            ]
        ended = []
        for session_id, node, container_id, last_active, warned, usage in rows:
            if not node or not container_id:
                continue
            backend = self.backend(node)
            stats = backend.stats(container_id)
            cpu = stats.cpu_seconds if stats else usage.get("cpu_seconds_seen", 0.0)
            if "gpu_util_last_pct" in usage:  # NVML can tell: a GPU session is idle when its GPU is
                busy = float(usage["gpu_util_last_pct"]) > 0
            else:
                busy = cpu - float(usage.get("cpu_seconds_seen", 0.0)) > 0.05  # beyond docker-init's own wake-ups
            with self.db.write_transaction() as session:
                row = session.get_one(ComputeSession, session_id)
                row.usage = {**usage, "cpu_seconds_seen": cpu}
                if busy:
                    row.last_active_at, row.idle_warned_at = now, None
            if busy:
                continue
            idle_for = now - last_active
            if idle_for >= timeout:
                # Ended first: the stop's `die` event then finds it ended instead of calling it a crash.
                self.end(session_id, None, f"reclaimed: idle for {int(idle_for.total_seconds() // 60)} min (site policy)")
                backend.stop(container_id)
                ended.append(session_id)
            elif idle_for >= timeout - self.config.idle_warning and warned is None:
                deadline = last_active + timeout
                self.warn(node, container_id, f"reservoir: this session is idle; it will be ended at {deadline:%H:%M} UTC unless it is used")
                with self.db.write_transaction() as session:
                    session.get_one(ComputeSession, session_id).idle_warned_at = now
        return ended

    def warn(self, node: str, container_id: str, message: str) -> None:
        """A line in the session's own log (its main process's stdout), where `session logs` shows it."""
        try:
            self.backend(node).exec(container_id, ["sh", "-c", 'printf "%s\\n" "$0" > /proc/1/fd/1', message], user="")
        except ReservoirError as exc:
            log.warning("cannot warn in %s: %s", container_id[:12], exc)

    # --- reading ----------------------------------------------------------------------------

    def resolve(self, user: str, admin: bool, ref: str) -> int:
        """A session id from an id or a name; another user's session is 'not found', never 'forbidden'."""
        with self.db.session() as session:
            query = select(ComputeSession).where(ComputeSession.state != SessionState.REMOVED)
            if ref.isdigit():
                query = query.where(ComputeSession.id == int(ref))
            else:
                query = query.where(ComputeSession.name == ref)
            if not admin or not ref.isdigit():
                query = query.where(ComputeSession.user == user)
            row = session.scalars(query.order_by(ComputeSession.id.desc())).first()
            if row is None:
                raise NotFound(f"no session {ref} of yours", hint="see `reservoir session ls`")
            return row.id

    def list(self, user: str, admin: bool) -> list[SessionView]:
        with self.db.session() as session:
            query = select(ComputeSession.id).where(ComputeSession.state != SessionState.REMOVED).order_by(ComputeSession.id)
            if not admin:
                query = query.where(ComputeSession.user == user)
            ids = list(session.scalars(query))
        return [self.view_by_id(i) for i in ids]

    def view_by_id(self, session_id: int) -> SessionView:
        with self.db.session() as session:
            row = session.get_one(ComputeSession, session_id)
            request = session.get_one(SchedRequest, row.request_id)
            shares = request.gpu_milli * request.num_gpu if request.num_gpu <= 1 else MILLI_PER_GPU * request.num_gpu
            devices = [[a.device.uuid, a.milli / MILLI_PER_GPU] for a in request.allocations]
            node = row.node or (request.node.name if request.node else None)
            if row.state == SessionState.QUEUED:
                labels = {r.id: r.label or f"request {r.id}" for r in session.scalars(select(SchedRequest).where(SchedRequest.state == RequestState.QUEUED))}
                status = explain(session, request.id, self.config.scheduler, self.now(), labels) or "placed; starting"
            elif row.state == SessionState.STARTING:
                status = f"starting on {node}"
            elif row.state == SessionState.RUNNING:
                where = ", ".join(f"{uuid} {share:.2f}" for uuid, share in devices)
                status = f"running on {node}" + (f" ({where})" if where else "")
            else:
                status = row.end_reason or "ended"
            return SessionView(
                id=row.id, name=row.name, user=row.user, image=row.image, kind=row.kind, state=row.state.value, status=status,
                shares=f"{shares / MILLI_PER_GPU:.2f}", cpu=f"{request.cpu_milli / 1000:g}", mem_mib=request.mem_mib,
                node=node, devices=devices, exit_code=row.exit_code, created_at=_iso(row.created_at) or "",
                started_at=_iso(row.started_at), ended_at=_iso(row.ended_at), command=list(row.command or []),
                usage=dict(row.usage or {}), spec=dict(row.spec or {}),
            )

    def container_of(self, session_id: int) -> tuple[Backend, str, str]:
        with self.db.session() as session:
            row = session.get_one(ComputeSession, session_id)
            node, container_id, user, state = row.node, row.container_id, row.user, row.state
        if not node or not container_id:
            raise ReservoirError(f"session {session_id} has no container yet ({state.value})", hint="wait until it runs: `reservoir session info ID`")
        return self.backend(node), container_id, f"{self.uid_of(user)}:{self.uid_of(user)}"

    def exec(self, user: str, admin: bool, ref: str, command: list[str]) -> ExecResult:
        session_id = self.resolve(user, admin, ref)
        backend, container_id, as_user = self.container_of(session_id)
        if backend.state(container_id) is None or not backend.state(container_id).running:  # type: ignore[union-attr]
            raise ReservoirError(f"session {ref} is not running", hint="see `reservoir session info ID`")
        self._touch(session_id)
        return backend.exec(container_id, command, user=as_user)

    def logs(self, user: str, admin: bool, ref: str, follow: bool, tail: int | None) -> Iterator[bytes]:
        session_id = self.resolve(user, admin, ref)
        backend, container_id, _ = self.container_of(session_id)
        return backend.logs(container_id, follow=follow, tail=tail)

    def _touch(self, session_id: int) -> None:
        with self.db.write_transaction() as session:
            row = session.get_one(ComputeSession, session_id)
            row.last_active_at, row.idle_warned_at = self.now(), None


def _with_usage(usage: dict[str, Any], stats: Usage) -> dict[str, Any]:
    """`usage` with a stats sample folded in: CPU time is a running total, memory a peak over the samples."""
    return {
        **usage,
        "cpu_seconds": round(max(float(usage.get("cpu_seconds", 0.0)), stats.cpu_seconds), 2),
        "mem_peak_mib": round(max(float(usage.get("mem_peak_mib", 0.0)), stats.mem_mib), 1),
    }


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "ended"
    if code == 0:
        return "exited 0"
    if code > 128:
        return f"exited {code} (killed by signal {code - 128})"
    return f"exited {code}"


def _chown(path: Path, uid: int) -> None:
    try:
        os.chown(path, uid, uid)
    except PermissionError:
        if path.stat().st_uid != uid:
            raise ReservoirError(
                f"{path}: cannot give it to uid {uid}",
                hint="run `reservoir serve` as root, or chown the sessions folder to that uid",
            ) from None
