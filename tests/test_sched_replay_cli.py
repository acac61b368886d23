"""`reservoir sched replay` as a user runs it: no traceback, no files unasked, the public trace's variants read."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reservoir.cli import cli

DATA = Path(__file__).parent / "data"
NODES = DATA / "sched_nodes.csv"
PODS = DATA / "sched_pods.csv"


def _replay(*extra: str) -> object:
    return CliRunner().invoke(cli, ["sched", "replay", "--nodes", str(NODES), "--policy", "bestfit", "--seed", "42", *extra])


def test_png_without_matplotlib_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A None entry in sys.modules makes `import matplotlib` raise ImportError, as on a plain install.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = _replay("--pods", str(PODS), "--png", str(tmp_path / "c.png"))
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "matplotlib" in lines[0] and "reservoir[plot]" in lines[0]
    assert not (tmp_path / "c.png").exists()


def test_without_matplotlib_and_without_png_the_replay_runs_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.chdir(tmp_path)
    result = _replay("--pods", str(PODS))
    assert result.exit_code == 0, result.output
    assert "allocation rate at 100 % arrived workload:" in result.output
    assert list(tmp_path.iterdir()) == []


def test_csv_goes_only_where_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    out.mkdir()
    monkeypatch.chdir(cwd)
    result = _replay("--pods", str(PODS), "--csv", str(out / "curve.csv"))
    assert result.exit_code == 0, result.output
    assert list(cwd.iterdir()) == []
    assert [p.name for p in out.iterdir()] == ["curve.csv"]


def test_pods_with_only_the_five_required_columns_replay(tmp_path: Path) -> None:
    # The public trace's multigpu variants ship name,cpu_milli,memory_mib,num_gpu,gpu_milli only;
    # an unknown extra column is ignored.
    pods = tmp_path / "pods.csv"
    with PODS.open(newline="") as src, pods.open("w", newline="") as dst:
        writer = csv.writer(dst)
        writer.writerow(["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "colour"])
        for row in csv.DictReader(src):
            writer.writerow([row["name"], row["cpu_milli"], row["memory_mib"], row["num_gpu"], row["gpu_milli"], "blue"])
    result = _replay("--pods", str(pods))
    assert result.exit_code == 0, result.output
    assert "allocation rate at 100 % arrived workload:" in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,1,0,0\n", "no task asks for a GPU"),
        (b"name,cpu_milli,memory_mib,num_gpu,gpu_milli\n\xff\xfe,1,1,1,1\n", "not a readable CSV file"),
    ],
)
def test_traces_that_used_to_hang_or_crash_get_one_line(tmp_path: Path, text: bytes, message: str) -> None:
    pods = tmp_path / "pods.csv"
    pods.write_bytes(text)
    result = _replay("--pods", str(pods))
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert message in result.output
