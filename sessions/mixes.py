"""Workload mixes derived from a trace, in the spirit of the FGD paper's variants, to check a
policy is not tuned to one mix.

Each is the trace with some tasks rewritten or added, drawn with a seeded
generator so every run sees the same mix (the replay seed then tunes and
shuffles it):

- ``share-100``: every GPU task asks for part of one GPU: a whole-GPU task
  is replaced by one of the trace's own sharing tasks (GPU share, CPU and
  memory together, so the CPU per GPU stays what sharing tasks ask for);
- ``share-80``: whole-GPU tasks are replaced so until sharing tasks carry 80 % of the GPU
  request (the paper's measure for its gpushare variants);
- ``constrained-10`` / ``constrained-33``: that share of the GPU tasks may
  only run on one GPU model, drawn in proportion to the cluster's GPUs of
  each model;
- ``multi-gpu-40``: single whole-GPU tasks ask for 2, 4 or 8 GPUs (CPU and
  memory scaled with them) until multi-GPU tasks carry 40 % of the GPU
  request;
- ``cpu-200``: twice as many CPU-only tasks (each drawn from the trace's).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np

from sessions.placement.base import NodeSpec
from sessions.resources import MILLI_PER_GPU, Request

MIX_NAMES = ("default", "share-100", "share-80", "constrained-10", "constrained-33", "multi-gpu-40", "cpu-200")
SHARING_MIXES = ("share-100", "share-80")
MIX_SEED = 0


def _whole_one(task: Request) -> bool:
    return task.num_gpu == 1 and task.gpu_milli == MILLI_PER_GPU


def _sharing(tasks: list[Request], fraction: float, rng: np.random.Generator) -> list[Request]:
    """Replace non-sharing GPU tasks by the trace's sharing tasks until shares carry `fraction`
    of the GPU request (every GPU task when `fraction` is 1)."""
    shares = [t for t in tasks if t.is_sharing] or [Request(gpu_milli=MILLI_PER_GPU // 2, num_gpu=1)]
    out = list(tasks)
    shared = sum(t.total_gpu_milli for t in tasks if t.is_sharing)
    total = sum(t.total_gpu_milli for t in tasks)
    for i in rng.permutation([i for i, t in enumerate(tasks) if t.num_gpu and not t.is_sharing]):
        if fraction < 1 and shared >= fraction * total:
            break
        new = replace(shares[int(rng.integers(len(shares)))], gpu_models=tasks[i].gpu_models)
        shared += new.total_gpu_milli
        total += new.total_gpu_milli - tasks[i].total_gpu_milli
        out[i] = new
    return out


def _constrained(tasks: list[Request], nodes: list[NodeSpec], fraction: float, rng: np.random.Generator) -> list[Request]:
    gpus: Counter[str] = Counter()
    for n in nodes:
        gpus[n.model] += n.gpus
    models = sorted(m for m in gpus if gpus[m])
    weights = np.array([gpus[m] for m in models], dtype=float)
    weights /= weights.sum()
    gpu = [i for i, t in enumerate(tasks) if t.num_gpu]
    out = list(tasks)
    for i in rng.permutation(gpu)[: int(round(fraction * len(gpu)))]:
        out[i] = replace(tasks[i], gpu_models=(str(rng.choice(models, p=weights)),))
    return out


def _multi_gpu(tasks: list[Request], fraction: float, rng: np.random.Generator) -> list[Request]:
    out = list(tasks)
    total = sum(t.total_gpu_milli for t in out)
    multi = sum(t.total_gpu_milli for t in out if t.num_gpu > 1)
    for i in rng.permutation([i for i, t in enumerate(tasks) if _whole_one(t)]):
        if multi >= fraction * total:
            break
        k = int(rng.choice([2, 4, 8], p=[0.5, 0.3, 0.2]))
        t = tasks[i]
        out[i] = replace(t, num_gpu=k, cpu_milli=t.cpu_milli * k, mem_mib=t.mem_mib * k)
        total += (k - 1) * MILLI_PER_GPU
        multi += k * MILLI_PER_GPU
    return out


def derive_mix(name: str, tasks: list[Request], nodes: list[NodeSpec], seed: int = MIX_SEED) -> list[Request]:
    rng = np.random.default_rng(seed)
    if name == "default":
        return list(tasks)
    if name == "share-100":
        return _sharing(tasks, 1.0, rng)
    if name == "share-80":
        return _sharing(tasks, 0.8, rng)
    if name in ("constrained-10", "constrained-33"):
        return _constrained(tasks, nodes, 0.10 if name.endswith("10") else 0.33, rng)
    if name == "multi-gpu-40":
        return _multi_gpu(tasks, 0.40, rng)
    if name == "cpu-200":
        cpu_only = [t for t in tasks if not t.num_gpu]
        return list(tasks) + [cpu_only[int(i)] for i in rng.integers(len(cpu_only), size=len(cpu_only))] if cpu_only else list(tasks)
    raise ValueError(f"unknown mix {name!r}")
