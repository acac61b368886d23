"""The container a session gets, computed from what was asked and placed: no engine, no database, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from sessions.backend import SESSION_LABEL, SITE_LABEL, USER_LABEL, Bind, ContainerSpec, OverlayVolume
from sessions.enforcement import DeviceShare, HamiConfig, gpu_enforcement
from sessions.mirror import APT_SOURCES_TARGET, CONFIG_MOUNT, Mirror, mirror_env

HOME = "/home/work"
USER_BASE = f"{HOME}/.local"
PATH = f"{USER_BASE}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# An interactive session's main process: it waits, users `exec` and `shell` into it.
IDLE_COMMAND = ("sleep", "infinity")


@dataclass(frozen=True)
class SessionPlan:
    session_id: int
    site_id: str
    user: str
    uid: int
    image: str
    kind: str  # "interactive" or "batch"
    command: tuple[str, ...]
    cpu_milli: int
    mem_mib: int
    shares: tuple[DeviceShare, ...]
    overlay: OverlayVolume
    config_dir: str  # host folder with pip.conf, Rprofile, apt sources
    mirror: Mirror
    hami: HamiConfig | None = None


def container_name(site_id: str, session_id: int) -> str:
    return f"reservoir-{site_id[:8]}-s{session_id}"


def container_spec(plan: SessionPlan) -> ContainerSpec:
    gpu = gpu_enforcement(plan.shares, plan.hami)
    env = {
        "HOME": HOME,
        "USER": plan.user,
        "PATH": PATH,
        "PYTHONUSERBASE": USER_BASE,
        "RESERVOIR_SESSION": str(plan.session_id),
        **mirror_env(plan.mirror),
        **gpu.env,
    }
    binds = [Bind(plan.config_dir, CONFIG_MOUNT, read_only=True)]
    if plan.mirror.apt:
        binds.append(Bind(f"{plan.config_dir}/reservoir.sources", APT_SOURCES_TARGET, read_only=True))
    binds.extend(Bind(host, target, read_only=True) for host, target in gpu.binds)
    command = plan.command if plan.kind == "batch" else (plan.command or IDLE_COMMAND)
    return ContainerSpec(
        name=container_name(plan.site_id, plan.session_id),
        image=plan.image,
        command=tuple(command),
        user=f"{plan.uid}:{plan.uid}",
        env=env,
        labels={SESSION_LABEL: str(plan.session_id), SITE_LABEL: plan.site_id, USER_LABEL: plan.user},
        working_dir=HOME,
        nano_cpus=plan.cpu_milli * 1_000_000,
        mem_limit_bytes=plan.mem_mib * 1024 * 1024,
        network_mode="host",
        binds=tuple(binds),
        volumes=(plan.overlay,),
        # The home itself is scratch owned by the user; only ~/.local (the overlay) persists.
        tmpfs={HOME: f"uid={plan.uid},gid={plan.uid},mode=0700"},
        device_ids=gpu.device_ids,
        capabilities=gpu.capabilities,
    )
