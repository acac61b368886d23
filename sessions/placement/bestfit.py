"""BestFit: the node left with the least CPU and GPU after placing wins (the published baseline)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sessions.placement.base import (
    MAX_NODE_CPU_MILLI,
    MAX_NODE_GPU_MILLI,
    ClusterState,
    Placement,
    gpu_left_after,
    pick_lowest,
    place_on_node,
)
from sessions.resources import Request


def leftover(cpu_left: np.ndarray, gpu_left: np.ndarray) -> np.ndarray:
    """What a node would have left, both resources normalised by the largest node: in [0, 1]."""
    return 0.5 * cpu_left / MAX_NODE_CPU_MILLI + 0.5 * gpu_left / MAX_NODE_GPU_MILLI


def leftover_score(state: ClusterState, task: Request) -> np.ndarray:
    return leftover(state.cpu_free - task.cpu_milli, gpu_left_after(state, task))


@dataclass
class BestFit:
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    name: str = "bestfit"

    def choose(self, state: ClusterState, task: Request, feasible: np.ndarray) -> Placement | None:
        scores = np.where(feasible, leftover_score(state, task), np.inf)
        node = pick_lowest(scores, self.rng)
        return None if node < 0 else place_on_node(state, task, node)

    def placed(self, state: ClusterState, task: Request, placement: Placement) -> None:
        return None
