"""GPU inventory: what NVML finds on this node, plus nodes declared in reservoir.toml.

NVML comes in as a module object (``pynvml`` from ``nvidia-ml-py`` by
default) so tests hand in a fake one to drive the error paths: no driver
library, no device, MIG not supported.

Declared nodes (for machines that cannot be probed, and simulated clusters)::

    [[scheduler.nodes]]
    name = "gpu-a"
    cpu = 64            # cores
    mem = "512g"
    gpus = 8
    model = "A100"
    group = "default"   # resource group, optional
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from sqlalchemy import select

from reservoir.db import Database
from reservoir.errors import ConfigError
from sessions.models import SchedDevice, SchedNode
from sessions.resources import parse_cpu, parse_mem

log = logging.getLogger("reservoir.sessions.inventory")


@dataclass(frozen=True)
class MigInstance:
    uuid: str
    memory_mib: int


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    memory_mib: int
    mig_mode: str  # "enabled", "disabled" or "unsupported"
    mig_instances: tuple[MigInstance, ...] = ()
    utilization_pct: int | None = None


@dataclass(frozen=True)
class NodeInventory:
    name: str
    cpu_milli: int
    mem_mib: int
    gpus: tuple[GpuInfo, ...]
    source: str  # "nvml" or "declared"
    group: str = "default"


@dataclass(frozen=True)
class ProbeResult:
    gpus: tuple[GpuInfo, ...] = ()
    driver_version: str | None = None
    problem: str | None = None  # why nothing could be probed, when so


@dataclass
class _Nvml:
    """The calls we make on the NVML module, with its error type looked up once."""

    module: Any
    error: type[BaseException] = field(init=False)

    def __post_init__(self) -> None:
        self.error = getattr(self.module, "NVMLError", Exception)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _mig_of(nvml: _Nvml, handle: Any) -> tuple[str, tuple[MigInstance, ...]]:
    try:
        current, _pending = nvml.module.nvmlDeviceGetMigMode(handle)
    except nvml.error:
        # NVML_ERROR_NOT_SUPPORTED on GPUs without MIG (anything before Ampere, consumer cards).
        return "unsupported", ()
    if not current:
        return "disabled", ()
    instances = []
    count = nvml.module.nvmlDeviceGetMaxMigDeviceCount(handle)
    for i in range(count):
        try:
            mig = nvml.module.nvmlDeviceGetMigDeviceHandleByIndex(handle, i)
        except nvml.error:
            continue  # an empty slot: fewer instances than the maximum are configured
        memory = nvml.module.nvmlDeviceGetMemoryInfo(mig)
        instances.append(MigInstance(_text(nvml.module.nvmlDeviceGetUUID(mig)), int(memory.total) // (1024 * 1024)))
    return "enabled", tuple(instances)


def _utilization(nvml: _Nvml, handle: Any) -> int | None:
    try:
        return int(nvml.module.nvmlDeviceGetUtilizationRates(handle).gpu)
    except nvml.error:
        return None  # not reported in MIG mode or on some virtualised GPUs


def _gpu_info(nvml: _Nvml, index: int) -> GpuInfo:
    handle = nvml.module.nvmlDeviceGetHandleByIndex(index)
    memory = nvml.module.nvmlDeviceGetMemoryInfo(handle)
    mig_mode, instances = _mig_of(nvml, handle)
    return GpuInfo(
        index=index,
        name=_text(nvml.module.nvmlDeviceGetName(handle)),
        uuid=_text(nvml.module.nvmlDeviceGetUUID(handle)),
        memory_mib=int(memory.total) // (1024 * 1024),
        mig_mode=mig_mode,
        mig_instances=instances,
        utilization_pct=_utilization(nvml, handle),
    )


def _default_nvml() -> ModuleType | None:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    return pynvml


def probe_gpus(nvml_module: Any | None = None) -> ProbeResult:
    """The GPUs NVML sees on this machine; a ProbeResult with `problem` set when it cannot look."""
    module = nvml_module if nvml_module is not None else _default_nvml()
    if module is None:
        return ProbeResult(problem="nvidia-ml-py is not installed")
    nvml = _Nvml(module)
    try:
        module.nvmlInit()
    except nvml.error as exc:
        # NVML_ERROR_LIBRARY_NOT_FOUND / DRIVER_NOT_LOADED: a machine without an NVIDIA driver.
        return ProbeResult(problem=f"NVML cannot start: {exc}")
    try:
        driver = _text(module.nvmlSystemGetDriverVersion())
        count = module.nvmlDeviceGetCount()
        if count == 0:
            return ProbeResult(driver_version=driver, problem="NVML found no GPU")
        return ProbeResult(gpus=tuple(_gpu_info(nvml, i) for i in range(count)), driver_version=driver)
    except nvml.error as exc:
        return ProbeResult(problem=f"NVML failed while probing: {exc}")
    finally:
        try:
            module.nvmlShutdown()
        except nvml.error:
            log.debug("nvmlShutdown failed", exc_info=True)


def _memory_mib() -> int:
    try:
        return (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // (1024 * 1024)
    except (ValueError, OSError):
        return 0


def local_node(probe: ProbeResult, group: str = "default") -> NodeInventory | None:
    if not probe.gpus:
        return None
    return NodeInventory(socket.gethostname(), (os.cpu_count() or 1) * 1000, _memory_mib(), probe.gpus, "nvml", group)


def declared_nodes(section: dict[str, Any], where: str) -> list[NodeInventory]:
    """Nodes from ``[[scheduler.nodes]]``; their GPUs get stable made-up UUIDs (node name + index)."""
    entries = section.get("nodes", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: scheduler.nodes must be an array of tables", hint="write [[scheduler.nodes]]")
    nodes = []
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ConfigError(f"{where}: scheduler node #{i} has no name")
        name = str(entry["name"])
        try:
            gpus = int(entry.get("gpus", 0))
            if gpus < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: scheduler node {name!r}: gpus={entry.get('gpus')!r} is not a count") from None
        model = str(entry.get("model", "GPU"))
        memory = int(entry.get("gpu_mem_mib", 0))
        infos = tuple(GpuInfo(g, model, f"declared-{name}-{g}", memory, "unsupported") for g in range(gpus))
        cpu = parse_cpu(str(entry.get("cpu", 0)))
        mem = parse_mem(str(entry.get("mem", "0")))
        nodes.append(NodeInventory(name, cpu, mem, infos, "declared", str(entry.get("group", "default"))))
    return nodes


def sync_inventory(db: Database, nodes: list[NodeInventory]) -> None:
    """Record `nodes` in the database; a node no longer found is marked offline, never deleted,
    so the allocations that refer to it stay intact."""
    with db.write_transaction() as session:
        existing = {n.name: n for n in session.scalars(select(SchedNode))}
        seen = set()
        for inv in nodes:
            seen.add(inv.name)
            node = existing.get(inv.name)
            if node is None:
                node = SchedNode(name=inv.name, cpu_milli=inv.cpu_milli, mem_mib=inv.mem_mib, source=inv.source)
                session.add(node)
                session.flush()
            node.cpu_milli, node.mem_mib, node.source = inv.cpu_milli, inv.mem_mib, inv.source
            node.resource_group, node.online = inv.group, True
            devices = {d.uuid: d for d in node.devices}
            for gpu in inv.gpus:
                device = devices.get(gpu.uuid)
                if device is None:
                    device = SchedDevice(node_id=node.id, uuid=gpu.uuid, slot=gpu.index, model=gpu.name)
                    session.add(device)
                device.slot, device.model, device.memory_mib = gpu.index, gpu.name, gpu.memory_mib
                device.facts = {
                    "mig_mode": gpu.mig_mode,
                    "mig_instances": [{"uuid": m.uuid, "memory_mib": m.memory_mib} for m in gpu.mig_instances],
                    "utilization_pct": gpu.utilization_pct,
                }
        for name, node in existing.items():
            if name not in seen and node.source == "declared":
                node.online = False
