"""The Docker engine as a session backend, through the `docker` SDK.

What it never does, whatever the spec says: run privileged, mount the engine's
socket, or give a container another network than host or none.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from reservoir.errors import ReservoirError
from sessions.backend import (
    SESSION_LABEL,
    SITE_LABEL,
    ContainerSpec,
    ContainerState,
    EngineEvent,
    ExecResult,
    OverlayVolume,
    Usage,
)

ENGINE_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
WATCHED_EVENTS = frozenset({"die", "oom", "destroy", "start"})


def _docker() -> Any:
    import docker

    return docker


def check_spec(spec: ContainerSpec) -> None:
    """Refuse what would hand a session the machine: privilege, the engine's socket, another network."""
    if spec.privileged:
        raise ReservoirError(f"{spec.name}: privileged containers are never started", hint="remove privileged from the spec")
    if spec.network_mode not in ("host", "none"):
        raise ReservoirError(f"{spec.name}: network {spec.network_mode!r} is not allowed", hint="use host or none")
    for bind in spec.binds:
        if bind.source in ENGINE_SOCKETS or bind.source.endswith("/docker.sock"):
            raise ReservoirError(f"{spec.name}: the engine's socket may not be mounted", hint=f"drop the bind of {bind.source}")


@dataclass
class DockerBackend:
    """One engine: `base_url` is a DOCKER_HOST value; None takes the environment's (or the default socket)."""

    base_url: str | None = None
    timeout_s: int = 60
    _client: Any = field(default=None, init=False, repr=False)

    @property
    def client(self) -> Any:
        if self._client is None:
            docker = _docker()
            try:
                if self.base_url:
                    self._client = docker.DockerClient(base_url=self.base_url, timeout=self.timeout_s)
                else:
                    self._client = docker.from_env(timeout=self.timeout_s)
                self._client.ping()
            except docker.errors.DockerException as exc:
                self._client = None
                where = self.base_url or "DOCKER_HOST or the default socket"
                raise ReservoirError(
                    f"cannot reach the Docker engine at {where}: {exc}",
                    hint="start dockerd, or set docker_host for this node in reservoir.toml",
                ) from None
        return self._client

    def _ensure_volume(self, volume: OverlayVolume) -> None:
        docker = _docker()
        try:
            existing = self.client.volumes.get(volume.name)
        except docker.errors.NotFound:
            existing = None
        if existing is not None:
            if (existing.attrs.get("Options") or {}) == volume.driver_opts:
                return
            # The site layer was rebuilt (another lowerdir): the volume is only a mount recipe, the data is upperdir.
            try:
                existing.remove()
            except docker.errors.APIError:
                return  # in use by another running session of this user: it keeps the layer it started with
        self.client.volumes.create(name=volume.name, driver="local", driver_opts=volume.driver_opts)

    def create(self, spec: ContainerSpec) -> str:
        docker = _docker()
        check_spec(spec)
        for volume in spec.volumes:
            self._ensure_volume(volume)
        mounts = [docker.types.Mount(b.target, b.source, type="bind", read_only=b.read_only) for b in spec.binds]
        mounts += [docker.types.Mount(v.target, v.name, type="volume") for v in spec.volumes]
        kwargs: dict[str, Any] = {}
        if spec.device_ids and self.has_gpu_runtime():
            kwargs["device_requests"] = [
                docker.types.DeviceRequest(device_ids=list(spec.device_ids), capabilities=[list(c) for c in spec.capabilities])
            ]
        if spec.nano_cpus:
            kwargs["nano_cpus"] = spec.nano_cpus
        if spec.mem_limit_bytes:
            kwargs["mem_limit"] = spec.mem_limit_bytes
            kwargs["memswap_limit"] = spec.mem_limit_bytes  # no swap beyond what was asked
        try:
            container = self.client.containers.create(
                spec.image,
                command=list(spec.command) or None,
                name=spec.name,
                user=spec.user,
                environment=spec.env,
                labels=spec.labels,
                working_dir=spec.working_dir,
                network_mode=spec.network_mode,
                mounts=mounts,
                tmpfs=spec.tmpfs,
                privileged=False,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                init=True,
                detach=True,
                **kwargs,
            )
        except docker.errors.ImageNotFound:
            raise ReservoirError(
                f"image {spec.image} is not on this node",
                hint="an admin brings it in with `reservoir session image import TARBALL NAME`",
            ) from None
        except docker.errors.APIError as exc:
            raise ReservoirError(f"the engine refused container {spec.name}: {exc.explanation or exc}") from None
        return str(container.id)

    def start(self, container_id: str) -> None:
        docker = _docker()
        try:
            self.client.api.start(container_id)
        except docker.errors.APIError as exc:
            raise ReservoirError(f"the engine could not start {container_id[:12]}: {exc.explanation or exc}") from None

    def stop(self, container_id: str, timeout_s: int = 5) -> None:
        docker = _docker()
        try:
            self.client.api.stop(container_id, timeout=timeout_s)
        except docker.errors.NotFound:
            pass

    def remove(self, container_id: str) -> None:
        docker = _docker()
        try:
            self.client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # removal already in progress
                raise

    def exec(self, container_id: str, command: list[str], user: str) -> ExecResult:
        docker = _docker()
        try:
            container = self.client.containers.get(container_id)
            code, output = container.exec_run(command, user=user, workdir="/home/work", demux=False)
        except docker.errors.NotFound:
            raise ReservoirError("the session's container is gone", hint="see `reservoir session info ID`") from None
        except docker.errors.APIError as exc:
            raise ReservoirError(f"exec failed: {exc.explanation or exc}") from None
        return ExecResult(int(code if code is not None else -1), bytes(output or b""))

    def exec_socket(self, container_id: str, command: list[str], user: str, env: dict[str, str]) -> tuple[str, Any]:
        """An interactive exec with a TTY: its id and the raw socket that carries the terminal both ways."""
        exec_id = self.client.api.exec_create(
            container_id, command, stdin=True, tty=True, user=user, workdir="/home/work", environment=env
        )["Id"]
        sock = self.client.api.exec_start(exec_id, tty=True, socket=True)
        return exec_id, sock

    def exec_resize(self, exec_id: str, rows: int, cols: int) -> None:
        self.client.api.exec_resize(exec_id, height=rows, width=cols)

    def logs(self, container_id: str, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]:
        docker = _docker()
        try:
            stream = self.client.api.logs(container_id, stream=True, follow=follow, tail=tail if tail is not None else "all")
        except docker.errors.NotFound:
            return iter(())
        return iter(stream)

    def stats(self, container_id: str) -> Usage | None:
        docker = _docker()
        try:
            # one_shot: no second sample a second later (we want totals, not a rate), so a call costs one round trip.
            raw = self.client.api.stats(container_id, stream=False, one_shot=True)
        except (docker.errors.NotFound, docker.errors.APIError):
            return None
        cpu_ns = (raw.get("cpu_stats") or {}).get("cpu_usage", {}).get("total_usage", 0) or 0
        memory = raw.get("memory_stats") or {}
        peak = memory.get("max_usage") or memory.get("usage") or 0  # max_usage: cgroup v1 only
        if not cpu_ns and not peak:
            return None  # a stopped container: the engine has nothing left to say, not "used nothing"
        return Usage(cpu_seconds=cpu_ns / 1e9, mem_mib=peak / (1024 * 1024))

    def pids(self, container_id: str) -> set[int]:
        docker = _docker()
        try:
            top = self.client.api.top(container_id)
        except (docker.errors.NotFound, docker.errors.APIError):
            return set()
        titles = list(top.get("Titles") or [])
        if "PID" not in titles:
            return set()
        column = titles.index("PID")
        return {int(p[column]) for p in top.get("Processes") or [] if str(p[column]).isdigit()}

    @staticmethod
    def _state_of(attrs: dict[str, Any]) -> ContainerState:
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        state = attrs.get("State") or {}
        running = bool(state.get("Running"))
        return ContainerState(
            id=str(attrs["Id"]),
            session_id=int(labels.get(SESSION_LABEL, 0) or 0),
            running=running,
            exit_code=None if running else int(state.get("ExitCode", -1)),
            oom_killed=bool(state.get("OOMKilled")),
        )

    def state(self, container_id: str) -> ContainerState | None:
        docker = _docker()
        try:
            return self._state_of(self.client.api.inspect_container(container_id))
        except docker.errors.NotFound:
            return None

    def containers(self, site: str) -> list[ContainerState]:
        found = self.client.api.containers(all=True, filters={"label": f"{SITE_LABEL}={site}"})
        states = []
        for summary in found:
            state = self.state(summary["Id"])
            if state is not None:
                states.append(state)
        return states

    def events(self, site: str) -> Iterator[EngineEvent]:
        stream = self.client.api.events(decode=True, filters={"type": "container", "label": f"{SITE_LABEL}={site}"})
        for raw in stream:
            action = str(raw.get("Action") or raw.get("status") or "")
            if action not in WATCHED_EVENTS:
                continue
            attributes = (raw.get("Actor") or {}).get("Attributes") or {}
            session = attributes.get(SESSION_LABEL)
            code = attributes.get("exitCode")
            yield EngineEvent(
                action=action,
                container_id=str(raw.get("id") or (raw.get("Actor") or {}).get("ID") or ""),
                session_id=int(session) if session else None,
                exit_code=int(code) if code is not None else None,
            )

    def has_gpu_runtime(self) -> bool:
        runtimes = (self.info().get("Runtimes") or {}).keys()
        if "nvidia" in runtimes:
            return True
        # The toolkit's hook alone (no runtime entry) is how docker >= 19.03 serves --gpus, on a local engine.
        return self.base_url is None and shutil.which("nvidia-container-runtime-hook") is not None

    def import_image(self, tarball: str, name: str) -> str:
        docker = _docker()
        repository, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "latest")
        try:
            self.client.api.import_image_from_file(tarball, repository=repository, tag=tag or "latest")
            image = self.client.images.get(f"{repository}:{tag or 'latest'}")
        except docker.errors.APIError as exc:
            raise ReservoirError(f"{tarball}: the engine could not import it: {exc.explanation or exc}") from None
        return str(image.id)

    def info(self) -> dict[str, Any]:
        return dict(self.client.info())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
