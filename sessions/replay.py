"""Offline replay of a GPU cluster trace (the FGD paper's protocol, see docs/scheduler.md).

1. tune the task list to `tune` x the cluster's milli-GPU (append uniformly
   drawn copies while below, remove uniformly drawn tasks while above);
2. shuffle it with the seed;
3. place tasks one by one, no departures; a task that fits nowhere fails;
4. after each task record the arrived workload and the allocation rate;
   report the allocation rate where the arrived workload reaches 100 %.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reservoir.errors import ReservoirError
from reservoir.progress import Progress
from sessions.placement import make_policy
from sessions.placement.base import ClusterState, NodeSpec
from sessions.resources import MILLI_PER_GPU, Request

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
# Only these are required: the public trace's multi-GPU variants ship no gpu_spec (or any
# later column), and the columns a replay does not use are ignored.
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
PLOT_EXTRA = "pip install 'reservoir[plot]'"


@dataclass(frozen=True)
class CurvePoint:
    arrived_pct: float
    allocated_pct: float


@dataclass(frozen=True)
class ReplayResult:
    policy: str
    seed: int
    tasks: int
    failed: int
    allocation_at_full: float  # % of cluster milli-GPU allocated when arrived workload reaches 100 %
    curve: list[CurvePoint]
    placement_seconds: float

    @property
    def decisions_per_second(self) -> float:
        return self.tasks / self.placement_seconds if self.placement_seconds > 0 else float("inf")


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise ReservoirError(f"{path}: missing column {missing[0]!r}", hint=f"expected {', '.join(columns)}")
            return list(reader)
    except OSError as exc:
        raise ReservoirError(f"cannot read trace {path}: {exc.strerror}", hint="pass --nodes/--pods paths") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ReservoirError(f"{path}: not a readable CSV file ({exc})", hint="the trace must be UTF-8 CSV with a header row") from exc


def _int(path: Path, row: int, column: str, value: str | None) -> int:
    try:
        number = int(value or 0)
    except ValueError:
        raise ReservoirError(f"{path}: row {row}: {column}={value!r} is not an integer") from None
    if number < 0:
        raise ReservoirError(f"{path}: row {row}: {column}={value} is negative")
    return number


def load_nodes(path: Path) -> list[NodeSpec]:
    nodes = [
        NodeSpec(
            name=r["sn"],
            cpu_milli=_int(path, i, "cpu_milli", r["cpu_milli"]),
            mem_mib=_int(path, i, "memory_mib", r["memory_mib"]),
            gpus=_int(path, i, "gpu", r["gpu"]),
            model=r["model"] or "",
        )
        for i, r in enumerate(_read_csv(path, NODE_COLUMNS), start=2)
    ]
    if not any(n.gpus for n in nodes):
        raise ReservoirError(f"{path}: no node has a GPU", hint="the replay measures GPU allocation")
    return nodes


def load_tasks(path: Path) -> list[Request]:
    tasks = []
    for i, r in enumerate(_read_csv(path, POD_COLUMNS), start=2):
        num_gpu = _int(path, i, "num_gpu", r["num_gpu"])
        milli = _int(path, i, "gpu_milli", r["gpu_milli"])
        if milli > MILLI_PER_GPU or (num_gpu == 1 and milli == 0):
            raise ReservoirError(f"{path}: row {i}: gpu_milli={milli} is outside 1..1000 for a GPU task")
        tasks.append(
            Request(
                gpu_milli=(milli if num_gpu == 1 else MILLI_PER_GPU if num_gpu else 0),
                num_gpu=num_gpu,
                cpu_milli=_int(path, i, "cpu_milli", r["cpu_milli"]),
                mem_mib=_int(path, i, "memory_mib", r["memory_mib"]),
                gpu_models=tuple(m for m in (r.get("gpu_spec") or "").split("|") if m),
            )
        )
    if not tasks:
        raise ReservoirError(f"{path}: the trace has no tasks")
    if not any(t.num_gpu for t in tasks):
        raise ReservoirError(f"{path}: no task asks for a GPU", hint="the replay measures GPU allocation")
    return tasks


def tune_tasks(tasks: list[Request], capacity_milli: int, ratio: float, rng: np.random.Generator) -> list[Request]:
    """Grow or shrink the task list until its GPU request is about `ratio` x the capacity."""
    target = ratio * capacity_milli
    tuned = list(tasks)
    total = sum(t.total_gpu_milli for t in tuned)
    while total < target:
        copy = tasks[int(rng.integers(len(tasks)))]
        tuned.append(copy)
        total += copy.total_gpu_milli
    while total > target and tuned:
        gone = tuned.pop(int(rng.integers(len(tuned))))
        total -= gone.total_gpu_milli
    return tuned


def replay(
    nodes: list[NodeSpec], tasks: list[Request], policy_name: str, seed: int, tune: float = 1.3
) -> ReplayResult:
    rng = np.random.default_rng(seed)
    state = ClusterState(nodes)
    capacity = state.capacity_milli
    workload = tune_tasks(tasks, capacity, tune, rng)
    order = rng.permutation(len(workload))
    workload = [workload[i] for i in order]
    # The simulator builds FGD's typical tasks once, from the trace as read, before tuning.
    policy = make_policy(policy_name, seed=seed, workload=tasks)
    arrived = allocated = failed = 0
    curve: list[CurvePoint] = []
    at_full: float | None = None
    started = time.perf_counter()
    with Progress(f"replay {policy_name} seed {seed}", total=len(workload), unit="task") as progress:
        for task in workload:
            placement = policy.choose(state, task, state.feasible(task))
            if placement is None:
                failed += 1
            else:
                state.apply(task, placement)
                policy.placed(state, task, placement)
                allocated += task.total_gpu_milli
            arrived += task.total_gpu_milli
            point = CurvePoint(100.0 * arrived / capacity, 100.0 * allocated / capacity)
            curve.append(point)
            if at_full is None and arrived >= capacity:
                at_full = point.allocated_pct
            progress.update()
    elapsed = time.perf_counter() - started
    if at_full is None:
        raise ReservoirError(
            f"the arrived workload only reached {curve[-1].arrived_pct:.1f} % of the cluster",
            hint="use --tune 1.0 or more",
        )
    return ReplayResult(policy_name, seed, len(workload), failed, at_full, curve, elapsed)


def write_curve_csv(result: ReplayResult, path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["task", "arrived_pct", "allocated_pct"])
        for i, point in enumerate(result.curve, start=1):
            writer.writerow([i, f"{point.arrived_pct:.4f}", f"{point.allocated_pct:.4f}"])


def require_matplotlib() -> None:
    """Fail before a replay, not after it, when a plot was asked for and cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ReservoirError("--png needs matplotlib, which is not installed", hint=PLOT_EXTRA) from None


def write_curve_png(results: list[ReplayResult], path: Path) -> None:
    # matplotlib is imported here so the scheduler itself never needs it.
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for result in results:
        xs = [p.arrived_pct for p in result.curve]
        ys = [p.allocated_pct for p in result.curve]
        ax.plot(xs, ys, label=f"{result.policy} (seed {result.seed}): {result.allocation_at_full:.2f} %")
    ax.plot([0, 130], [0, 130], color="grey", linewidth=0.5, linestyle="--")
    ax.axvline(100, color="grey", linewidth=0.5)
    ax.set_xlabel("arrived workload (% of cluster GPU)")
    ax.set_ylabel("allocated GPU (% of cluster GPU)")
    ax.set_xlim(0, max(p.arrived_pct for r in results for p in r.curve))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
