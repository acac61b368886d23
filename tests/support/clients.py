"""Real clients the tests drive: skip on a laptop without them, fail in CI.

CI sets RESERVOIR_REQUIRE_CLIENTS=1, so a missing client there is a failure,
never a silent skip.
"""

from __future__ import annotations

import os
import shutil

import pytest


def clients_required() -> bool:
    return os.environ.get("RESERVOIR_REQUIRE_CLIENTS", "") not in ("", "0")


def missing(what: str) -> None:
    """Skip (laptop) or fail (CI) because `what` is not available."""
    if clients_required():
        pytest.fail(f"{what} is required (RESERVOIR_REQUIRE_CLIENTS=1) but not available")
    pytest.skip(f"{what} is not available")


def require_executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"the `{name}` executable")
    assert path is not None
    return path
