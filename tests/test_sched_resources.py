from __future__ import annotations

import pytest

from reservoir.errors import ReservoirError
from sessions.resources import Request, parse_request


def test_a_half_gpu_with_cpu_and_memory() -> None:
    assert parse_request(["cuda.shares=0.5", "cpu=2", "mem=8g"]) == Request(
        gpu_milli=500, num_gpu=1, cpu_milli=2000, mem_mib=8192
    )


def test_shares_above_one_span_whole_gpus() -> None:
    request = parse_request(["cuda.shares=3"])
    assert (request.num_gpu, request.gpu_milli, request.total_gpu_milli) == (3, 1000, 3000)
    assert not request.is_sharing


def test_the_smallest_quantum_is_one_hundredth() -> None:
    assert parse_request(["cuda.shares=0.01"]).gpu_milli == 10


@pytest.mark.parametrize("value", ["0.005", "0.333", "1.001"])
def test_a_share_off_the_quantum_says_so(value: str) -> None:
    with pytest.raises(ReservoirError, match="not a multiple of the 0.01 GPU quantum"):
        parse_request([f"cuda.shares={value}"])


def test_a_fractional_share_above_one_is_refused() -> None:
    with pytest.raises(ReservoirError, match="whole number of GPUs"):
        parse_request(["cuda.shares=1.5"])


def test_a_model_constraint() -> None:
    assert parse_request(["cuda.shares=1", "cuda.model=A100|H100"]).gpu_models == ("A100", "H100")


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["cuda.shares=half"], "is not a number"),
        (["cuda.shares=-1"], "non-negative"),
        (["gpu=1"], "unknown resource 'gpu'"),
        (["cpu"], "is not key=value"),
        (["mem=lots"], "is not a size"),
        (["cpu=1", "cpu=2"], "given twice"),
        (["cuda.model=A100"], "without cuda.shares"),
    ],
)
def test_bad_requests_get_a_one_line_error(items: list[str], message: str) -> None:
    with pytest.raises(ReservoirError, match=message) as info:
        parse_request(items)
    assert "\n" not in str(info.value)


def test_memory_units() -> None:
    assert parse_request(["mem=512m"]).mem_mib == 512
    assert parse_request(["mem=1.5g"]).mem_mib == 1536
    assert parse_request(["mem=2Gi"]).mem_mib == 2048
