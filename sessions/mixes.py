"""Other workload mixes derived from a trace, to check a policy is not tuned to one mix.

Each is the default trace with some tasks rewritten, drawn with a fixed
generator so every run sees the same mix:

- ``share-heavy``: half of the whole-GPU tasks become GPU shares, their size
  drawn from the trace's own sharing tasks;
- ``multi-gpu``: a third of the whole-GPU tasks ask for 2, 4 or 8 GPUs
  (CPU and memory scaled with them);
- ``constrained``: a third of the GPU tasks may only run on one GPU model,
  drawn in proportion to the cluster's GPUs of each model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np

from sessions.placement.base import NodeSpec
from sessions.resources import MILLI_PER_GPU, Request

MIX_NAMES = ("default", "share-heavy", "multi-gpu", "constrained")


def _whole_one(task: Request) -> bool:
    return task.num_gpu == 1 and task.gpu_milli == MILLI_PER_GPU


def derive_mix(name: str, tasks: list[Request], nodes: list[NodeSpec], seed: int = 0) -> list[Request]:
    rng = np.random.default_rng(seed)
    if name == "default":
        return list(tasks)
    if name == "share-heavy":
        shares = [t.gpu_milli for t in tasks if t.is_sharing]
        return [
            replace(t, gpu_milli=int(rng.choice(shares))) if _whole_one(t) and rng.random() < 0.5 else t for t in tasks
        ]
    if name == "multi-gpu":
        out = []
        for t in tasks:
            if _whole_one(t) and rng.random() < 1 / 3:
                k = int(rng.choice([2, 4, 8], p=[0.5, 0.3, 0.2]))
                t = replace(t, num_gpu=k, cpu_milli=t.cpu_milli * k, mem_mib=t.mem_mib * k)
            out.append(t)
        return out
    if name == "constrained":
        gpus = Counter()
        for n in nodes:
            gpus[n.model] += n.gpus
        models = sorted(m for m in gpus if gpus[m])
        weights = np.array([gpus[m] for m in models], dtype=float)
        weights /= weights.sum()
        return [
            replace(t, gpu_models=(str(rng.choice(models, p=weights)),)) if t.num_gpu and rng.random() < 1 / 3 else t
            for t in tasks
        ]
    raise ValueError(f"unknown mix {name!r}")
