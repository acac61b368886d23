"""The derived workload mixes (sessions/mixes.py) measure what the FGD paper's variants measure."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessions.mixes import MIX_NAMES, derive_mix
from sessions.placement.base import NodeSpec
from sessions.replay import load_nodes, load_tasks
from sessions.resources import Request

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def trace() -> tuple[list[NodeSpec], list[Request]]:
    return load_nodes(DATA / "sched_nodes.csv"), load_tasks(DATA / "sched_pods.csv")


def _sharing_part_of_gpu_request(tasks: list[Request]) -> float:
    return sum(t.total_gpu_milli for t in tasks if t.is_sharing) / sum(t.total_gpu_milli for t in tasks)


def test_share_80_counts_the_gpu_request_not_the_tasks(trace: tuple[list[NodeSpec], list[Request]]) -> None:
    # The paper's axis: "proportion of GPU-sharing workloads in terms of GPU requests".
    nodes, tasks = trace
    mix = derive_mix("share-80", tasks, nodes)
    assert _sharing_part_of_gpu_request(mix) == pytest.approx(0.80, abs=0.02)
    assert len(mix) == len(tasks)


def test_share_100_makes_every_gpu_task_a_share_and_keeps_the_cpu_only_ones(trace: tuple[list[NodeSpec], list[Request]]) -> None:
    nodes, tasks = trace
    mix = derive_mix("share-100", tasks, nodes)
    assert all(t.is_sharing for t in mix if t.num_gpu)
    assert [t for t in mix if not t.num_gpu] == [t for t in tasks if not t.num_gpu]
    # Replacements come from the trace's own sharing tasks, CPU and memory with them.
    own = {(t.gpu_milli, t.cpu_milli, t.mem_mib) for t in tasks if t.is_sharing}
    assert {(t.gpu_milli, t.cpu_milli, t.mem_mib) for t in mix if t.num_gpu} <= own


def test_multi_gpu_40_and_every_mix_is_the_same_for_the_same_seed(trace: tuple[list[NodeSpec], list[Request]]) -> None:
    nodes, tasks = trace
    mix = derive_mix("multi-gpu-40", tasks, nodes)
    multi = sum(t.total_gpu_milli for t in mix if t.num_gpu > 1) / sum(t.total_gpu_milli for t in mix)
    assert multi >= 0.40
    for name in MIX_NAMES:
        assert derive_mix(name, tasks, nodes) == derive_mix(name, tasks, nodes)
