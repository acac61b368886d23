"""Spread: the node left with the MOST CPU and GPU wins, so load spreads evenly (interactive clusters)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sessions.placement.base import ClusterState, Placement, pick_lowest, place_on_node
from sessions.placement.bestfit import leftover_score
from sessions.resources import Request


@dataclass
class Spread:
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    name: str = "spread"

    def choose(self, state: ClusterState, task: Request, feasible: np.ndarray) -> Placement | None:
        scores = np.where(feasible, -leftover_score(state, task), np.inf)
        node = pick_lowest(scores, self.rng)
        if node < 0:
            return None
        if task.is_sharing:
            # The emptiest GPU, so two sessions on one node share as little as they can.
            return Placement(node, (int(state.free[node].argmax()),), task.gpu_milli)
        return place_on_node(state, task, node)

    def placed(self, state: ClusterState, task: Request, placement: Placement) -> None:
        return None
