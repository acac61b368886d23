"""`reservoir` with the vetters switched off: mirroring alone, which is all bandersnatch does.

`reservoir sync` hands the releases it added to every installed
`reservoir.vetters` plugin (license scan, advisories). That is part of a
hub's sync but not of mirroring, so the benchmark times it apart
(`sync_pypi.py --with-vetting`). Usage: as the `reservoir` command.
"""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and its benchmark
# modules (benchmarks/licenses.py) would shadow the components of the same name.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from reservoir import plugins  # noqa: E402

_all_groups = plugins._group


def _without_vetters(name: str) -> list[EntryPoint]:
    return [] if name == "reservoir.vetters" else _all_groups(name)


def main() -> None:
    plugins._group = _without_vetters
    from reservoir.cli import main as reservoir_main

    reservoir_main()


if __name__ == "__main__":
    main()
