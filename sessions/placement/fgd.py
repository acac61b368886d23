"""FGD: Fragmentation Gradient Descent (Weng et al., ATC '23).

A node's fragmentation measured by a task class m is the free GPU milli
that m cannot use there: all of the node's free GPU when m cannot run on it
at all (CPU, memory, model or GPUs fall short, or m wants no GPU), else the
free milli of the GPUs too small for m. The node's expected fragmentation
weights that by how often each class occurs in the workload. FGD places a
task where that expectation grows least, trying every GPU that fits.

Only the chosen node's fragmentation changes after a placement, so the
per-node, per-class terms are cached and refreshed for that node alone;
candidate placements are scored from the one GPU they change.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from sessions.placement.base import (
    MAX_NODE_GPU_MILLI,
    ClusterState,
    Placement,
    place_on_node,
)
from sessions.placement.bestfit import leftover
from sessions.resources import MILLI_PER_GPU, Request

# The CPU part of a lexicographic (free GPU, CPU left) tie-break key: exact for nodes of up to
# 200 cores (the trace's largest has 128), and 1 milli-CPU still moves the key by about 6e-10.
CPU_SPAN = 200_000

# The authors' run scripts (scripts/generate_config_and_run.py, --pod-popularity-threshold 95).
SIMULATOR_COVERAGE = 0.95


@dataclass(frozen=True)
class TaskMix:
    """Typical task classes and their popularity (summing to 1): the simulator's "typical pods"."""

    cpu: np.ndarray  # [C]
    mem: np.ndarray
    need: np.ndarray  # milli each GPU must have free (0 for CPU-only classes)
    count: np.ndarray  # GPUs needed
    models: tuple[tuple[str, ...], ...]
    weight: np.ndarray

    @classmethod
    def from_tasks(cls, tasks: list[Request], coverage: float = 1.0, step: int = 1) -> TaskMix:
        """The most popular classes, `step` at a time, until they cover `coverage` of the tasks.

        A class is (CPU, GPU milli per GPU, GPUs, models), CPU-only tasks included, memory not
        part of it, each task counted once, as in the simulator. Equal counts are ordered as it
        sorts them (larger CPU, then larger GPU milli, GPUs and model string first). The authors'
        scripts cut at 95 % (SIMULATOR_COVERAGE), which `fgd` uses.
        """
        classes = Counter(
            (t.cpu_milli, t.gpu_milli if t.is_sharing else (MILLI_PER_GPU if t.num_gpu else 0), t.num_gpu, t.gpu_models)
            for t in tasks
        )
        if not classes:
            classes = Counter({(0, MILLI_PER_GPU, 1, ()): 1})
        ranked = sorted(classes.items(), key=lambda kc: (kc[1], kc[0][0], kc[0][1], kc[0][2], "|".join(kc[0][3])), reverse=True)
        total = sum(classes.values())
        kept = covered = 0
        # As GetTypicalPods computes it: threshold percent * total / 100.
        expected = coverage * 100 * total / 100.0
        while covered < expected and kept < len(ranked):
            kept = min(kept + step, len(ranked))
            covered = sum(count for _, count in ranked[:kept])
        chosen = ranked[:kept]
        keys = [k for k, _ in chosen]
        return cls(
            cpu=np.array([k[0] for k in keys], dtype=np.int64),
            mem=np.zeros(len(keys), dtype=np.int64),
            need=np.array([k[1] for k in keys], dtype=np.int64),
            count=np.array([k[2] for k in keys], dtype=np.int64),
            models=tuple(k[3] for k in keys),
            weight=np.array([c / covered for _, c in chosen], dtype=np.float64),
        )


@dataclass
class FragmentCache:
    """Per node and class: GPUs that fit the class, milli on GPUs too small, node fragmentation."""

    fits: np.ndarray  # [N, C] number of GPUs with free >= need
    small: np.ndarray  # [N, C] free milli on GPUs with free < need
    frag: np.ndarray  # [N] expected fragmentation
    model_ok: np.ndarray  # [N, C]


def _fits_and_small(free: np.ndarray, need: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """free [..., G], need [C] -> ([..., C], [..., C])."""
    f = free[..., :, None]
    fits = (f >= need).sum(axis=-2)
    small = np.where(f < need, f, 0).sum(axis=-2)
    return fits, small


def expected_frag(
    mix: TaskMix, fits: np.ndarray, small: np.ndarray, total: np.ndarray, cpu: np.ndarray, mem: np.ndarray, model_ok: np.ndarray
) -> np.ndarray:
    """Expected fragmentation from per-class terms; leading axes broadcast, last axis is the class."""
    total, cpu, mem = np.asarray(total), np.asarray(cpu), np.asarray(mem)
    runs = (
        (cpu[..., None] >= mix.cpu) & (mem[..., None] >= mix.mem) & (fits >= mix.count) & (mix.count > 0) & model_ok
    )
    per_class = np.where(runs, small, total[..., None])
    return (per_class * mix.weight).sum(axis=-1)


def pick_ranked(scores: np.ndarray, rows: np.ndarray, rank: np.ndarray) -> int:
    """Index into `scores` of the best (lowest) score; among equal scores the node of lowest rank.

    The simulator's Kubernetes fork (github.com/mental2008/kubernetes v1.20.5-minor,
    pkg/scheduler/core/generic_scheduler.go, selectHost) keeps the lexicographically smallest node
    name among the best scores instead of drawing one, and the simulator names nodes
    "%04d-" + name with a seeded permutation (pkg/simulator/simulator.go, syncClusterResourceList):
    ties go to the nodes of one fixed random order for the whole replay.
    """
    best = np.flatnonzero(scores <= scores.min() + 1e-9)
    return int(best[np.argmin(rank[rows[best]])]) if len(best) > 1 else int(best[0])


@dataclass
class NodeScores:
    """One task shape's score on each node, valid while the node's version is the one recorded.

    A node's score depends only on its own free resources and the task, and a placement changes
    one node: the other nodes keep their scores for the next task of the same shape."""

    score: np.ndarray  # [N]
    gpu: np.ndarray  # [N] the GPU a share takes there (-1 for other tasks)
    version: np.ndarray  # [N] the node's version when computed, -1 never


@dataclass
class FGD:
    mix: TaskMix
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    name: str = "fgd"
    # Score like the published simulator: int(100 * sigmoid(-delta / 1000)); ties to the node of
    # lowest rank in a fixed random order (pick_ranked).
    quantized: bool = False
    # Among placements of equal (quantized) score, order by leftover ("fgd+"): 0 = off,
    # 1 = least left over (BestFit's), -1 = most left over.
    tie_break: int = 0
    # Order a CPU-only task's equal scores by the GPU the node has left (least first), then its CPU
    # (least first): such a task changes no class's fragmentation on most nodes, and on the node
    # with the least free GPU its CPU strands the least GPU.
    cpu_only_gpu_first: bool = False
    scale: float = 1000.0  # milli-GPU of fragmentation change per step of the sigmoid
    # Keep each task shape's node scores between decisions (same placements, several times faster).
    score_cache: bool = True
    _cache: FragmentCache | None = field(default=None, init=False)
    _rank: np.ndarray | None = field(default=None, init=False)
    _versions: np.ndarray | None = field(default=None, init=False)
    _scores: dict[tuple[int, int, int], NodeScores] = field(default_factory=dict, init=False)

    def _versions_for(self, state: ClusterState) -> np.ndarray:
        if self._versions is None:
            self._versions = np.zeros(len(state.nodes), dtype=np.int64)
        return self._versions

    def _ranks(self, state: ClusterState) -> np.ndarray:
        """Each node's place in the fixed tie-breaking order, drawn once per cluster."""
        if self._rank is None or len(self._rank) != len(state.nodes):
            self._rank = self.rng.permutation(len(state.nodes))
        return self._rank

    def _model_ok(self, state: ClusterState) -> np.ndarray:
        return np.stack([state.model_mask(models) for models in self.mix.models], axis=1)

    def _cache_for(self, state: ClusterState) -> FragmentCache:
        if self._cache is None:
            fits, small = _fits_and_small(state.free, self.mix.need)
            model_ok = self._model_ok(state)
            frag = expected_frag(self.mix, fits, small, state.free.sum(axis=1), state.cpu_free, state.mem_free, model_ok)
            self._cache = FragmentCache(fits, small, frag, model_ok)
        return self._cache

    def choose(self, state: ClusterState, task: Request, feasible: np.ndarray) -> Placement | None:
        nodes = np.flatnonzero(feasible)
        if len(nodes) == 0:
            return None
        if self.score_cache:
            scores, gpus = self._cached_scores(state, task, nodes)
        else:
            scores, gpus = self._node_scores(state, task, nodes)
        best = pick_ranked(scores, nodes, self._ranks(state))
        node = int(nodes[best])
        if task.is_sharing:
            return Placement(node, (int(gpus[best]),), task.gpu_milli)
        return place_on_node(state, task, node)

    def _cached_scores(self, state: ClusterState, task: Request, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        versions = self._versions_for(state)
        # Memory and GPU models decide only which nodes are feasible, never a node's score.
        key = (task.cpu_milli, task.gpu_milli, task.num_gpu)
        entry = self._scores.get(key)
        if entry is None:
            n = len(state.nodes)
            entry = NodeScores(np.zeros(n), np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64))
            self._scores[key] = entry
        stale = nodes[entry.version[nodes] != versions[nodes]]
        if len(stale):
            entry.score[stale], entry.gpu[stale] = self._node_scores(state, task, stale)
            entry.version[stale] = versions[stale]
        return entry.score[nodes], entry.gpu[nodes]

    def _node_scores(self, state: ClusterState, task: Request, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each of `nodes`' score for `task` (lower is better) and, for a share, the GPU it takes."""
        cache = self._cache_for(state)
        if task.is_sharing:
            scores, rows, gpus = self.share_candidates(state, task, nodes)
            # Candidates come node by node: a node scores its best GPU and takes the lowest
            # index with that score (allocateGpuIdBasedOnFGDScore keeps the first on a strict >).
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            best = np.minimum.reduceat(scores, starts)
            segment = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(rows)]))
            tied = np.where(scores <= best[segment] + 1e-9, gpus, np.iinfo(np.int64).max)
            return best, np.minimum.reduceat(tied, starts)
        cpu = state.cpu_free[nodes] - task.cpu_milli
        mem = state.mem_free[nodes] - task.mem_mib
        total = state.free[nodes].sum(axis=1) - task.total_gpu_milli
        # Taking k whole GPUs lowers the count of fitting GPUs by k for every GPU class
        # and leaves the milli on too-small GPUs as it was.
        fits = cache.fits[nodes] - task.num_gpu
        after = expected_frag(self.mix, fits, cache.small[nodes], total, cpu, mem, cache.model_ok[nodes])
        return self._score(after - cache.frag[nodes], state, task, nodes), np.full(len(nodes), -1, dtype=np.int64)

    def share_candidates(self, state: ClusterState, task: Request, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, node, GPU) of every GPU of `nodes` that holds the share, node by node, GPUs in order:
        the task's CPU and milli taken from that node and GPU, as fgd_score.go tries them."""
        cache = self._cache_for(state)
        sub = state.free[nodes]
        node_idx, gpu_idx = np.nonzero(sub >= task.gpu_milli)
        before = sub[node_idx, gpu_idx]
        after_gpu = before - task.gpu_milli
        need = self.mix.need
        rows = nodes[node_idx]
        fits = cache.fits[rows] - (before[:, None] >= need) + (after_gpu[:, None] >= need)
        small = cache.small[rows] - np.where(before[:, None] < need, before[:, None], 0)
        small = small + np.where(after_gpu[:, None] < need, after_gpu[:, None], 0)
        total = state.free[rows].sum(axis=1) - task.gpu_milli
        cpu = state.cpu_free[rows] - task.cpu_milli
        mem = state.mem_free[rows] - task.mem_mib
        after = expected_frag(self.mix, fits, small, total, cpu, mem, cache.model_ok[rows])
        return self._score(after - cache.frag[rows], state, task, rows), rows, gpu_idx.astype(np.int64)

    def _score(self, delta: np.ndarray, state: ClusterState, task: Request, rows: np.ndarray) -> np.ndarray:
        if not self.quantized:
            return delta
        score = -np.floor(100.0 / (1.0 + np.exp(np.clip(delta, -50_000, 50_000) / self.scale)))
        # Each tie-break term lies in [0, 1): it orders placements only within one integer score.
        if self.cpu_only_gpu_first and task.num_gpu == 0:
            gpu_left = state.free[rows].sum(axis=1)
            cpu_left = state.cpu_free[rows] - task.cpu_milli
            return score + (gpu_left * CPU_SPAN + cpu_left) / ((MAX_NODE_GPU_MILLI + 1) * CPU_SPAN)
        if self.tie_break:
            cpu_left = state.cpu_free[rows] - task.cpu_milli
            gpu_left = state.free[rows].sum(axis=1) - task.total_gpu_milli
            score = score + self.tie_break * 0.5 * leftover(cpu_left, gpu_left)
        return score

    def placed(self, state: ClusterState, task: Request, placement: Placement) -> None:
        self.refresh(state, placement.node)

    def refresh(self, state: ClusterState, node: int) -> None:
        """Recompute the cached terms of one node after its free resources changed."""
        cache = self._cache_for(state)
        self._versions_for(state)[node] += 1
        fits, small = _fits_and_small(state.free[node], self.mix.need)
        cache.fits[node], cache.small[node] = fits, small
        cache.frag[node] = expected_frag(
            self.mix, fits, small, state.free[node].sum(), state.cpu_free[node], state.mem_free[node], cache.model_ok[node]
        )
