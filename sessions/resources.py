"""Resource requests in Backend.AI's spelling: ``cuda.shares=0.5``, ``cpu=2``, ``mem=8g``.

Inside the scheduler everything is an integer: GPU shares in milli-GPU
(1000 = one GPU, so the 0.01 quantum is 10 milli), CPU in milli-cores and
memory in MiB. Integers keep placement exact and comparable between the
queue and the trace replay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from reservoir.errors import ReservoirError

MILLI_PER_GPU = 1000
SHARE_QUANTUM_MILLI = 10  # 0.01 of a GPU
_MEM_UNITS = {"": 1 / (1024 * 1024), "b": 1 / (1024 * 1024), "k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}


@dataclass(frozen=True)
class Request:
    """What one session or task asks for."""

    gpu_milli: int = 0  # per GPU when num_gpu == 1; whole GPUs (1000 each) otherwise
    num_gpu: int = 0
    cpu_milli: int = 0
    mem_mib: int = 0
    gpu_models: tuple[str, ...] = field(default=())  # empty: any model

    @property
    def total_gpu_milli(self) -> int:
        return self.gpu_milli * self.num_gpu if self.num_gpu == 1 else MILLI_PER_GPU * self.num_gpu

    @property
    def is_sharing(self) -> bool:
        return self.num_gpu == 1 and self.gpu_milli < MILLI_PER_GPU

    @property
    def shares(self) -> Decimal:
        return Decimal(self.total_gpu_milli) / MILLI_PER_GPU


def _decimal(key: str, value: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ReservoirError(f"resource {key}={value!r} is not a number", hint="write e.g. cuda.shares=0.5") from None
    if not number.is_finite() or number < 0:
        raise ReservoirError(f"resource {key}={value!r} must be a non-negative number")
    return number


def parse_shares(value: str) -> tuple[int, int]:
    """``cuda.shares`` to (milli per GPU, number of GPUs)."""
    shares = _decimal("cuda.shares", value)
    milli = shares * MILLI_PER_GPU
    if milli % SHARE_QUANTUM_MILLI != 0:
        raise ReservoirError(
            f"resource cuda.shares={value} is not a multiple of the 0.01 GPU quantum",
            hint="round it to two decimals, e.g. cuda.shares=0.25",
        )
    milli_int = int(milli)
    if milli_int == 0:
        return 0, 0
    if milli_int <= MILLI_PER_GPU:
        return milli_int, 1
    if milli_int % MILLI_PER_GPU != 0:
        raise ReservoirError(
            f"resource cuda.shares={value} is above 1.0 but not a whole number of GPUs",
            hint="a share above one GPU spans whole GPUs: use 2, 3, ...",
        )
    return MILLI_PER_GPU, milli_int // MILLI_PER_GPU


def parse_cpu(value: str) -> int:
    cores = _decimal("cpu", value)
    milli = cores * 1000
    if milli != int(milli):
        raise ReservoirError(f"resource cpu={value} is finer than a milli-core")
    return int(milli)


def parse_mem(value: str) -> int:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgtKMGT]?)(i?[bB]?)\s*", value)
    if not match:
        raise ReservoirError(f"resource mem={value!r} is not a size", hint="write e.g. mem=8g or mem=512m")
    number = Decimal(match.group(1)) * Decimal(_MEM_UNITS[match.group(2).lower()])
    return int(number.to_integral_value(rounding="ROUND_CEILING"))


def parse_request(items: list[str] | tuple[str, ...]) -> Request:
    """Parse ``-r key=value`` items; ``cuda.model=A100|H100`` constrains the GPU model."""
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ReservoirError(f"resource {item!r} is not key=value", hint="write e.g. -r cuda.shares=0.5")
        if key in values:
            raise ReservoirError(f"resource {key} is given twice")
        values[key] = value.strip()
    known = {"cuda.shares", "cpu", "mem", "cuda.model"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ReservoirError(f"unknown resource {unknown[0]!r}", hint=f"known: {', '.join(sorted(known))}")
    gpu_milli, num_gpu = parse_shares(values.get("cuda.shares", "0"))
    models = tuple(m for m in values.get("cuda.model", "").split("|") if m)
    if models and num_gpu == 0:
        raise ReservoirError("resource cuda.model is given without cuda.shares", hint="ask for a GPU share too")
    return Request(
        gpu_milli=gpu_milli,
        num_gpu=num_gpu,
        cpu_milli=parse_cpu(values.get("cpu", "0")),
        mem_mib=parse_mem(values.get("mem", "0")),
        gpu_models=models,
    )
