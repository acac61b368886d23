"""Scheduler benchmark: trace replay of every placement policy on the Alibaba GPU-sharing trace.

    .venv/bin/python benchmarks/scheduler.py [--traces DIR] [--seeds 42-51] [--mix-seeds 42-46] [--jobs 2]

The trace is read from --traces, else $RESERVOIR_TRACES, else ../shared/traces
beside the repository. Prints, per policy and mix, the mean allocation rate at
100 % arrived workload (the published figures beside the default trace's),
the ratio of fgd-bf against the named peers (BestFit measured in the same run,
and the published FGD figure), and the speed of one replay (median seconds,
placement decisions per second).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sessions.mixes import MIX_NAMES, derive_mix  # noqa: E402
from sessions.placement import POLICY_NAMES  # noqa: E402
from sessions.replay import load_nodes, load_tasks, replay, write_curve_png  # noqa: E402

PUBLISHED = {"random": 86.30, "dotprod": 90.62, "gpuclustering": 91.65, "gpupacking": 91.78, "bestfit": 92.86, "fgd": 95.23}


def seed_range(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def one_run(args: tuple[Path, str, str, int]) -> tuple[str, str, int, float, float, int]:
    traces, mix, policy, seed = args
    nodes = load_nodes(traces / "openb_node_list_gpu_node.csv")
    tasks = derive_mix(mix, load_tasks(traces / "openb_pod_list_default.csv"), nodes)
    started = time.perf_counter()
    result = replay(nodes, tasks, policy, seed)
    return mix, policy, seed, result.allocation_at_full, time.perf_counter() - started, result.tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=Path, default=Path(os.environ.get("RESERVOIR_TRACES", REPO.parent / "shared" / "traces")))
    parser.add_argument("--seeds", default="42-51", help="seeds for the default trace")
    parser.add_argument("--mix-seeds", default="42-46", help="seeds for the derived mixes")
    parser.add_argument("--policies", default=",".join(POLICY_NAMES))
    parser.add_argument("--mixes", default=",".join(MIX_NAMES))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--plot", type=Path, default=REPO / ".bench" / "scheduler-curves.png")
    parser.add_argument("--no-plot", action="store_true", help="skip the seed-42 curves plot")
    opts = parser.parse_args()
    policies = opts.policies.split(",")
    mixes = opts.mixes.split(",")
    runs = [
        (opts.traces, mix, policy, seed)
        for mix in mixes
        for policy in policies
        for seed in (seed_range(opts.seeds) if mix == "default" else seed_range(opts.mix_seeds))
    ]
    with ProcessPoolExecutor(opts.jobs) as pool:
        results = list(pool.map(one_run, runs))

    rate: dict[tuple[str, str], list[float]] = {}
    seconds: dict[str, list[float]] = {}
    sizes: dict[str, list[int]] = {}
    for mix, policy, _seed, alloc, elapsed, n in results:
        rate.setdefault((mix, policy), []).append(alloc)
        if mix == "default":
            seconds.setdefault(policy, []).append(elapsed)
            sizes.setdefault(policy, []).append(n)

    print(f"allocation rate at 100 % arrived workload, mean over seeds ({opts.seeds} default, {opts.mix_seeds} mixes)")
    print("| policy | " + " | ".join(mixes) + " | published (default) |")
    print("|---" * (len(mixes) + 2) + "|")
    for policy in policies:
        cells = [f"{statistics.mean(rate[(m, policy)]):.2f} %" for m in mixes]
        published = f"{PUBLISHED[policy]:.2f} %" if policy in PUBLISHED else "-"
        print(f"| {policy} | " + " | ".join(cells) + f" | {published} |")
    print()
    print("| policy | median s per replay (default) | decisions/s |")
    print("|---|---|---|")
    for policy in policies:
        median = statistics.median(seconds[policy])
        print(f"| {policy} | {median:.2f} | {statistics.median(sizes[policy]) / median:,.0f} |")
    if "fgd-bf" in policies and "bestfit" in policies:
        for mix in mixes:
            ours = statistics.mean(rate[(mix, "fgd-bf")])
            peer = statistics.mean(rate[(mix, "bestfit")])
            print(f"ratio fgd-bf / bestfit ({mix}): {ours / peer:.4f}")
        print(f"ratio fgd-bf / published FGD 95.23 (default): {statistics.mean(rate[('default', 'fgd-bf')]) / 95.23:.4f}")
    if not opts.no_plot:
        opts.plot.parent.mkdir(parents=True, exist_ok=True)
        nodes = load_nodes(opts.traces / "openb_node_list_gpu_node.csv")
        tasks = load_tasks(opts.traces / "openb_pod_list_default.csv")
        write_curve_png([replay(nodes, tasks, p, 42) for p in policies], opts.plot)
        print(f"curves (seed 42, default trace): {opts.plot}")


if __name__ == "__main__":
    main()
