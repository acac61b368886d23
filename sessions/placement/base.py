"""The cluster state every placement policy works on, and the policy interface.

The state is a set of numpy arrays over nodes (free milli-GPU per GPU slot,
free CPU, free memory) so a policy scores every node of a 1,000-node
cluster in one vectorised step instead of a Python loop per node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sessions.resources import MILLI_PER_GPU, Request

# The largest node specs of the published simulator, used to normalise scores.
MAX_NODE_CPU_MILLI = 128_000
MAX_NODE_GPU_MILLI = 8 * MILLI_PER_GPU


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cpu_milli: int
    mem_mib: int
    gpus: int
    model: str


@dataclass(frozen=True)
class Placement:
    node: int
    gpus: tuple[int, ...]  # GPU slots on that node
    milli_per_gpu: int


@dataclass
class ClusterState:
    """Free resources per node; GPU slots beyond a node's count stay at 0 free."""

    nodes: list[NodeSpec]
    free: np.ndarray = field(init=False)  # [N, G] int64 milli-GPU
    cpu_free: np.ndarray = field(init=False)  # [N]
    mem_free: np.ndarray = field(init=False)  # [N]
    gpu_count: np.ndarray = field(init=False)
    model_index: np.ndarray = field(init=False)
    models: list[str] = field(init=False)

    def __post_init__(self) -> None:
        width = max((n.gpus for n in self.nodes), default=1) or 1
        self.free = np.zeros((len(self.nodes), width), dtype=np.int64)
        for i, node in enumerate(self.nodes):
            self.free[i, : node.gpus] = MILLI_PER_GPU
        self.cpu_free = np.array([n.cpu_milli for n in self.nodes], dtype=np.int64)
        self.mem_free = np.array([n.mem_mib for n in self.nodes], dtype=np.int64)
        self.gpu_count = np.array([n.gpus for n in self.nodes], dtype=np.int64)
        self.models = sorted({n.model for n in self.nodes})
        self.model_index = np.array([self.models.index(n.model) for n in self.nodes], dtype=np.int64)

    @property
    def capacity_milli(self) -> int:
        return int(self.gpu_count.sum()) * MILLI_PER_GPU

    def model_mask(self, models: tuple[str, ...]) -> np.ndarray:
        if not models:
            return np.ones(len(self.nodes), dtype=bool)
        wanted = [self.models.index(m) for m in models if m in self.models]
        return np.isin(self.model_index, wanted)

    def feasible(self, task: Request) -> np.ndarray:
        """Nodes whose CPU, memory, GPU model and GPUs can hold `task`."""
        ok = (self.cpu_free >= task.cpu_milli) & (self.mem_free >= task.mem_mib)
        if task.num_gpu == 0:
            return ok
        ok &= self.model_mask(task.gpu_models)
        if task.is_sharing:
            return ok & (self.free.max(axis=1) >= task.gpu_milli)
        return ok & ((self.free == MILLI_PER_GPU).sum(axis=1) >= task.num_gpu)

    def whole_gpus(self, node: int, count: int) -> tuple[int, ...]:
        return tuple(int(g) for g in np.flatnonzero(self.free[node] == MILLI_PER_GPU)[:count])

    def apply(self, task: Request, placement: Placement) -> None:
        self.cpu_free[placement.node] -= task.cpu_milli
        self.mem_free[placement.node] -= task.mem_mib
        for gpu in placement.gpus:
            self.free[placement.node, gpu] -= placement.milli_per_gpu

    def release(self, task: Request, placement: Placement) -> None:
        self.cpu_free[placement.node] += task.cpu_milli
        self.mem_free[placement.node] += task.mem_mib
        for gpu in placement.gpus:
            self.free[placement.node, gpu] += placement.milli_per_gpu


class Policy(Protocol):
    name: str

    def choose(self, state: ClusterState, task: Request, feasible: np.ndarray) -> Placement | None:
        """Pick a node (and GPUs) among the `feasible` ones; None when there is none."""

    def placed(self, state: ClusterState, task: Request, placement: Placement) -> None:
        """Told after `placement` was applied to `state` (policies with caches update them)."""


def pick_lowest(scores: np.ndarray, rng: np.random.Generator) -> int:
    """Index of the lowest finite score, ties broken at random."""
    best = scores.min()
    if not np.isfinite(best):
        return -1
    ties = np.flatnonzero(scores <= best + 1e-9)
    return int(ties[0] if len(ties) == 1 else rng.choice(ties))


def tightest_gpu(state: ClusterState, node: int, milli: int) -> int:
    """The GPU with the least free milli that still holds `milli` (best fit inside a node)."""
    free = state.free[node]
    candidates = np.where(free >= milli, free, np.iinfo(np.int64).max)
    return int(candidates.argmin())


def place_on_node(state: ClusterState, task: Request, node: int, gpu: int | None = None) -> Placement:
    """The placement of `task` on `node`: its tightest GPU for a share, wholly free GPUs otherwise."""
    if task.num_gpu == 0:
        return Placement(node, (), 0)
    if task.is_sharing:
        return Placement(node, (tightest_gpu(state, node, task.gpu_milli) if gpu is None else gpu,), task.gpu_milli)
    return Placement(node, state.whole_gpus(node, task.num_gpu), MILLI_PER_GPU)


def gpu_left_after(state: ClusterState, task: Request) -> np.ndarray:
    return state.free.sum(axis=1) - task.total_gpu_milli
