"""GpuPacking: a partly used GPU first, then an idle GPU on a busy node, then an idle node."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sessions.placement.base import ClusterState, Placement, pick_lowest, place_on_node
from sessions.resources import MILLI_PER_GPU, Request


@dataclass
class GpuPacking:
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    name: str = "gpupacking"

    def choose(self, state: ClusterState, task: Request, feasible: np.ndarray) -> Placement | None:
        slots = np.arange(state.free.shape[1]) < state.gpu_count[:, None]
        busy_node = ((state.free < MILLI_PER_GPU) & slots).any(axis=1)
        if task.is_sharing:
            share_fits = ((state.free >= task.gpu_milli) & (state.free < MILLI_PER_GPU)).any(axis=1)
            tier = np.where(share_fits, 0, np.where(busy_node, 1, 2))
        else:
            tier = np.where(busy_node, 1, 2)
        # Within a tier, the node with the least free GPU (ties at random).
        score = tier * 10.0 + state.free.sum(axis=1) / (MILLI_PER_GPU * state.free.shape[1] + 1)
        node = pick_lowest(np.where(feasible, score, np.inf), self.rng)
        return None if node < 0 else place_on_node(state, task, node)

    def placed(self, state: ClusterState, task: Request, placement: Placement) -> None:
        return None
