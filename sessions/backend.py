"""What the session service asks of a container engine, and the container it describes.

`ContainerSpec` is plain data computed by `sessions.spec` (pure, tested without an
engine); a `Backend` turns it into a container. The Docker backend is the one
implementation; a Slurm one would take the same spec.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

SESSION_LABEL = "io.reservoir.session"  # the session id
SITE_LABEL = "io.reservoir.site"  # the site's instance id: one engine may serve several sites (and test runs)
USER_LABEL = "io.reservoir.user"


@dataclass(frozen=True)
class Bind:
    source: str  # host path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class OverlayVolume:
    """A Docker `local` volume of type overlay: the site's package layer below, the user's own directory above."""

    name: str
    target: str
    lowerdir: str
    upperdir: str
    workdir: str

    @property
    def driver_opts(self) -> dict[str, str]:
        return {
            "type": "overlay",
            "device": "overlay",
            "o": f"lowerdir={self.lowerdir},upperdir={self.upperdir},workdir={self.workdir}",
        }


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    command: tuple[str, ...]
    user: str  # "uid:gid"
    env: dict[str, str]
    labels: dict[str, str]
    working_dir: str
    nano_cpus: int  # 0: no CPU limit
    mem_limit_bytes: int  # 0: no memory limit
    network_mode: str = "host"
    binds: tuple[Bind, ...] = ()
    volumes: tuple[OverlayVolume, ...] = ()
    tmpfs: dict[str, str] = field(default_factory=dict)
    device_ids: tuple[str, ...] = ()
    capabilities: tuple[tuple[str, ...], ...] = ()
    privileged: bool = False

    def as_record(self) -> dict[str, Any]:
        """The spec as JSON for the session row; secrets in the environment are masked."""
        record = asdict(self)
        record["env"] = {k: mask_secret(v) for k, v in self.env.items()}
        return record


def mask_secret(value: str) -> str:
    """`http://__token__:rsv_x@host/` -> `http://__token__:***@host/`."""
    scheme, sep, rest = value.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return value
    credentials, _, host = rest.partition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


@dataclass(frozen=True)
class ContainerState:
    id: str
    session_id: int
    running: bool
    exit_code: int | None
    oom_killed: bool = False


@dataclass(frozen=True)
class EngineEvent:
    action: str  # "die", "oom", "destroy", "start", ...
    container_id: str
    session_id: int | None
    exit_code: int | None = None


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: bytes


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    mem_mib: float


class Backend(Protocol):
    """One container engine (one node)."""

    def create(self, spec: ContainerSpec) -> str:
        """Create the container (and its volumes); returns its id. Does not start it."""

    def start(self, container_id: str) -> None: ...

    def stop(self, container_id: str, timeout_s: int = 5) -> None: ...

    def remove(self, container_id: str) -> None:
        """Remove the container; a missing one is not an error."""

    def exec(self, container_id: str, command: list[str], user: str) -> ExecResult: ...

    def logs(self, container_id: str, *, follow: bool = False, tail: int | None = None) -> Iterator[bytes]: ...

    def stats(self, container_id: str) -> Usage | None: ...

    def pids(self, container_id: str) -> set[int]:
        """The container's processes as host pids (what NVML reports); empty when it is gone."""

    def containers(self, site: str) -> list[ContainerState]:
        """Every container of `site` on this engine, running or not."""

    def state(self, container_id: str) -> ContainerState | None: ...

    def events(self, site: str) -> Iterator[EngineEvent]:
        """Container events of `site` as they happen (blocks); ends when the engine goes away."""

    def has_gpu_runtime(self) -> bool:
        """Whether this engine can honour a GPU device request (the NVIDIA container toolkit is installed)."""

    def import_image(self, tarball: str, name: str) -> str: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
