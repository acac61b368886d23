"""How a GPU share becomes limits a container gets: one pure function, so what each session is given can be tested.

Three mechanisms, each enforcing something different (docs/sessions.md has the full table):

- the device request (``DeviceRequest(device_ids=[uuid], capabilities=[["gpu"]])``) and
  ``CUDA_VISIBLE_DEVICES``: which GPUs the container can open at all; a hard boundary,
  enforced by the NVIDIA container runtime through device cgroups.
- MPS (``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``, ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``): the
  share of SMs and the device memory a client of an MPS control daemon may use; honoured
  only when the node runs ``nvidia-cuda-mps-control`` and the container reaches its pipe.
- HAMi-core's ``libvgpu.so`` (``CUDA_DEVICE_MEMORY_LIMIT``, ``CUDA_DEVICE_SM_LIMIT``,
  preloaded): intercepts CUDA's allocation and launch calls inside the process; a cap
  the process could bypass by unsetting LD_PRELOAD, so a courtesy limit, not isolation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sessions.resources import MILLI_PER_GPU


@dataclass(frozen=True)
class DeviceShare:
    """One GPU a session holds part of."""

    uuid: str
    milli: int  # 1000 = the whole device
    memory_mib: int  # the device's total memory; 0 when unknown (a declared node without gpu_mem_mib)


@dataclass(frozen=True)
class HamiConfig:
    """Where the site keeps HAMi-core's library on the nodes (``[sessions] hami_library``)."""

    library: str  # host path of libvgpu.so
    container_path: str = "/usr/local/vgpu/libvgpu.so"


@dataclass(frozen=True)
class GpuEnforcement:
    device_ids: tuple[str, ...] = ()
    capabilities: tuple[tuple[str, ...], ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    binds: tuple[tuple[str, str], ...] = ()  # (host path, container path), read-only

    @property
    def wants_gpu(self) -> bool:
        return bool(self.device_ids)


def share_memory_mib(share: DeviceShare) -> int:
    """The device memory a share may hold: its fraction of the device, rounded down to whole MiB."""
    return share.memory_mib * share.milli // MILLI_PER_GPU


def gpu_enforcement(shares: list[DeviceShare] | tuple[DeviceShare, ...], hami: HamiConfig | None = None) -> GpuEnforcement:
    """The device request, environment and binds a container gets for `shares` (empty: no GPU at all)."""
    if not shares:
        # No GPU: make sure a CUDA program does not pick one up from a runtime default.
        return GpuEnforcement(env={"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"})
    uuids = tuple(s.uuid for s in shares)
    env = {"CUDA_VISIBLE_DEVICES": ",".join(uuids), "NVIDIA_VISIBLE_DEVICES": ",".join(uuids)}
    binds: tuple[tuple[str, str], ...] = ()
    fractional = [s for s in shares if s.milli < MILLI_PER_GPU]
    if fractional:
        # A fraction only ever sits on one device (resources.parse_shares); whole GPUs need no cap.
        share = fractional[0]
        env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(max(1, share.milli * 100 // MILLI_PER_GPU))
        memory = share_memory_mib(share)
        if memory:
            # MPS takes per-device limits as "<device>=<limit>"; inside the container the device is ordinal 0.
            env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={memory}MB"
        if hami is not None:
            env["CUDA_DEVICE_SM_LIMIT"] = str(max(1, share.milli * 100 // MILLI_PER_GPU))
            if memory:
                env["CUDA_DEVICE_MEMORY_LIMIT"] = f"{memory}m"
            env["LD_PRELOAD"] = hami.container_path
            binds = ((hami.library, hami.container_path),)
    return GpuEnforcement(device_ids=uuids, capabilities=(("gpu",),), env=env, binds=binds)
