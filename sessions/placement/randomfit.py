"""Random: any node that fits, any GPU that fits (the published lower baseline)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sessions.placement.base import ClusterState, Placement, place_on_node
from sessions.resources import Request


@dataclass
class RandomFit:
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    name: str = "random"

    def choose(self, state: ClusterState, task: Request, feasible: np.ndarray) -> Placement | None:
        nodes = np.flatnonzero(feasible)
        if len(nodes) == 0:
            return None
        node = int(self.rng.choice(nodes))
        if task.is_sharing:
            gpus = np.flatnonzero(state.free[node] >= task.gpu_milli)
            return Placement(node, (int(self.rng.choice(gpus)),), task.gpu_milli)
        return place_on_node(state, task, node)

    def placed(self, state: ClusterState, task: Request, placement: Placement) -> None:
        return None
