"""Placement policies, one per module, chosen by name (per resource group in the queue)."""

from __future__ import annotations

import numpy as np

from reservoir.errors import ReservoirError
from sessions.placement.base import ClusterState, NodeSpec, Placement, Policy
from sessions.placement.bestfit import BestFit
from sessions.placement.dotprod import DotProd
from sessions.placement.fgd import FGD, SIMULATOR_COVERAGE, TaskMix
from sessions.placement.gpuclustering import GpuClustering
from sessions.placement.gpupacking import GpuPacking
from sessions.placement.randomfit import RandomFit
from sessions.placement.spread import Spread
from sessions.policies import POLICY_NAMES
from sessions.resources import Request

__all__ = ["POLICY_NAMES", "ClusterState", "NodeSpec", "Placement", "Policy", "make_policy"]


def make_policy(name: str, *, seed: int | None = None, workload: list[Request] | None = None) -> Policy:
    """A fresh policy; `workload` is the request mix FGD measures fragmentation against."""
    rng = np.random.default_rng(seed)
    if name == "fgd":
        # As the authors' simulator runs it: classes covering 95 % of the tasks (their scripts'
        # podPopularityThreshold), int(100 * sigmoid(-delta / 1000)), ties to one fixed node order.
        return FGD(TaskMix.from_tasks(workload or [], coverage=SIMULATOR_COVERAGE), rng=rng, name=name, quantized=True)
    if name == "fgd-bf":
        # The faithful fgd, except that a CPU-only task's equal scores go to the node with the least
        # free GPU, then the least CPU left, before the node order (BENCHMARKS.md: the designs tried).
        return FGD(
            TaskMix.from_tasks(workload or [], coverage=SIMULATOR_COVERAGE), rng=rng, name=name, quantized=True, cpu_only_gpu_first=True
        )
    simple = {
        "bestfit": BestFit,
        "spread": Spread,
        "random": RandomFit,
        "dotprod": DotProd,
        "gpupacking": GpuPacking,
        "gpuclustering": GpuClustering,
    }
    if name not in simple:
        raise ReservoirError(f"unknown placement policy {name!r}", hint=f"choose one of {', '.join(POLICY_NAMES)}")
    return simple[name](rng=rng)  # type: ignore[no-any-return]
