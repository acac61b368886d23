"""GpuClustering: tasks with the same GPU request go to nodes already hosting that request size."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sessions.placement.base import ClusterState, Placement, pick_lowest, place_on_node
from sessions.placement.bestfit import leftover_score
from sessions.resources import Request


@dataclass
class GpuClustering:
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    name: str = "gpuclustering"
    _hosted: dict[int, set[int]] = field(default_factory=dict, init=False)  # request milli -> nodes

    def choose(self, state: ClusterState, task: Request, feasible: np.ndarray) -> Placement | None:
        same = np.zeros(len(state.nodes), dtype=bool)
        same[list(self._hosted.get(task.gpu_milli, ()))] = True
        # Nodes that host the same request size first, best fit among them; then best fit anywhere.
        score = np.where(same, 0.0, 10.0) + leftover_score(state, task)
        node = pick_lowest(np.where(feasible, score, np.inf), self.rng)
        return None if node < 0 else place_on_node(state, task, node)

    def placed(self, state: ClusterState, task: Request, placement: Placement) -> None:
        if task.num_gpu:
            self._hosted.setdefault(task.gpu_milli, set()).add(placement.node)
