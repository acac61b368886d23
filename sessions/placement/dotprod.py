"""DotProd (Tetris-style alignment): the node whose free (CPU, GPU) vector best aligns with the request."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sessions.placement.base import (
    MAX_NODE_CPU_MILLI,
    MAX_NODE_GPU_MILLI,
    ClusterState,
    Placement,
    pick_lowest,
    place_on_node,
)
from sessions.resources import Request


@dataclass
class DotProd:
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    name: str = "dotprod"

    def choose(self, state: ClusterState, task: Request, feasible: np.ndarray) -> Placement | None:
        # Smallest dot product of request and free capacity: packs the task where
        # little of what it uses is left, as the published baseline does.
        score = (task.cpu_milli / MAX_NODE_CPU_MILLI) * (state.cpu_free / MAX_NODE_CPU_MILLI) + (
            task.total_gpu_milli / MAX_NODE_GPU_MILLI
        ) * (state.free.sum(axis=1) / MAX_NODE_GPU_MILLI)
        node = pick_lowest(np.where(feasible, score, np.inf), self.rng)
        return None if node < 0 else place_on_node(state, task, node)

    def placed(self, state: ClusterState, task: Request, placement: Placement) -> None:
        return None
