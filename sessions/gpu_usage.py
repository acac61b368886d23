"""What a running session uses of its GPUs, from NVML, folded into its usage record.

NVML answers for the machine it runs on, so only sessions on a node whose engine
is local to the server are metered (a remote node's GPUs are not visible here).
Per device, each sample takes:

- utilisation: the device's own `nvmlDeviceGetUtilizationRates().gpu`. A device is
  shared between sessions, so for a fractional share this is the device's, not the
  session's alone: NVML has no per-process SM figure outside accounting mode.
- memory: the `usedGpuMemory` of the device's compute processes whose pid is one of
  the container's (as the engine lists them, host pids). This one is the session's own.

The NVML module comes in as an object (``pynvml``), as in sessions.inventory, so
tests pass a fake one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("reservoir.sessions")


@dataclass(frozen=True)
class GpuSample:
    uuid: str
    util_pct: int | None  # the device's, None when NVML cannot say
    mem_mib: float  # the session's processes' own


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def sample_gpus(nvml: Any, uuids: Iterable[str], pids: set[int]) -> list[GpuSample]:
    """One sample of each device in `uuids`; the memory counted is that of `pids` only. Empty when NVML cannot start."""
    error = getattr(nvml, "NVMLError", Exception)
    try:
        nvml.nvmlInit()
    except error as exc:
        log.debug("NVML cannot start: %s", exc)
        return []
    samples = []
    try:
        for uuid in uuids:
            try:
                handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
            except error:
                continue  # a declared device NVML does not know (another machine's)
            try:
                util: int | None = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except error:
                util = None
            try:
                processes = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            except error:
                processes = []
            used = sum(int(p.usedGpuMemory or 0) for p in processes if int(p.pid) in pids)
            samples.append(GpuSample(_text(uuid), util, used / (1024 * 1024)))
    finally:
        try:
            nvml.nvmlShutdown()
        except error:
            log.debug("nvmlShutdown failed", exc_info=True)
    return samples


def fold(usage: dict[str, Any], samples: list[GpuSample]) -> dict[str, Any]:
    """`usage` with the samples added: mean utilisation over all samples so far, peak memory (summed over devices)."""
    if not samples:
        return usage
    folded = dict(usage)
    utils = [s.util_pct for s in samples if s.util_pct is not None]
    if utils:
        count = int(folded.get("gpu_samples", 0))
        mean = sum(utils) / len(utils)
        total = float(folded.get("gpu_util_pct", 0.0)) * count + mean
        folded["gpu_samples"] = count + 1
        folded["gpu_util_pct"] = round(total / (count + 1), 1)
        folded["gpu_util_last_pct"] = round(mean, 1)
    memory = sum(s.mem_mib for s in samples)
    folded["gpu_mem_peak_mib"] = round(max(float(folded.get("gpu_mem_peak_mib", 0.0)), memory), 1)
    return folded


def default_nvml() -> Any | None:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    return pynvml


__all__ = ["GpuSample", "default_nvml", "fold", "sample_gpus"]
