"""GPU discovery through an NVML module handed in (a fake one drives the error paths), and `reservoir gpus`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from click.testing import CliRunner

from reservoir.cli import cli
from reservoir.context import AppContext
from reservoir.errors import ConfigError
from reservoir.home import create_home
from sessions.inventory import declared_nodes, local_node, probe_gpus
from sessions.queue import SchedulerConfig, submit
from sessions.resources import parse_request


class FakeNVMLError(Exception):
    pass


@dataclass
class Memory:
    total: int


@dataclass
class Util:
    gpu: int


@dataclass
class FakeGpu:
    name: str
    uuid: str
    memory_gib: int
    mig: tuple[int, int] | None = (0, 0)  # None: MIG not supported
    mig_devices: list[FakeGpu] = field(default_factory=list)
    utilization: int | None = 7


@dataclass
class FakeNVML:
    """The slice of the pynvml API inventory.py calls, over a list of fake GPUs."""

    gpus: list[FakeGpu]
    init_error: str | None = None
    NVMLError: type[Exception] = FakeNVMLError
    shut_down: bool = False

    def nvmlInit(self) -> None:
        if self.init_error:
            raise FakeNVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> bytes:
        return gpu.name.encode()

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str:
        return gpu.uuid

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> Memory:
        return Memory(gpu.memory_gib * 1024**3)

    def nvmlDeviceGetMigMode(self, gpu: FakeGpu) -> tuple[int, int]:
        if gpu.mig is None:
            raise FakeNVMLError("Not Supported")
        return gpu.mig

    def nvmlDeviceGetMaxMigDeviceCount(self, gpu: FakeGpu) -> int:
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, gpu: FakeGpu, index: int) -> FakeGpu:
        if index >= len(gpu.mig_devices):
            raise FakeNVMLError("Not Found")
        return gpu.mig_devices[index]

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> Util:
        if gpu.utilization is None:
            raise FakeNVMLError("Not Supported")
        return Util(gpu.utilization)


def test_discovers_name_uuid_memory_mig_and_utilization() -> None:
    mig = [FakeGpu("MIG 3g.40gb", "MIG-aaa", 40), FakeGpu("MIG 3g.40gb", "MIG-bbb", 40)]
    nvml = FakeNVML([
        FakeGpu("NVIDIA H100 80GB HBM3", "GPU-1111", 80, mig=(1, 1), mig_devices=mig, utilization=None),
        FakeGpu("Tesla T4", "GPU-2222", 16, mig=None),
    ])
    result = probe_gpus(nvml)
    assert result.problem is None and result.driver_version == "550.54.15"
    h100, t4 = result.gpus
    assert (h100.name, h100.uuid, h100.memory_mib, h100.mig_mode) == ("NVIDIA H100 80GB HBM3", "GPU-1111", 81920, "enabled")
    assert [m.uuid for m in h100.mig_instances] == ["MIG-aaa", "MIG-bbb"]
    assert h100.utilization_pct is None
    assert (t4.mig_mode, t4.utilization_pct) == ("unsupported", 7)
    assert nvml.shut_down


def test_no_driver_is_reported_not_raised() -> None:
    result = probe_gpus(FakeNVML([], init_error="NVML Shared Library Not Found"))
    assert result.gpus == () and "NVML cannot start: NVML Shared Library Not Found" in (result.problem or "")
    assert local_node(result) is None


def test_no_device() -> None:
    result = probe_gpus(FakeNVML([]))
    assert result.problem == "NVML found no GPU"


def test_mig_disabled_and_unsupported() -> None:
    result = probe_gpus(FakeNVML([FakeGpu("A100", "GPU-3", 40, mig=(0, 0)), FakeGpu("V100", "GPU-4", 32, mig=None)]))
    assert [g.mig_mode for g in result.gpus] == ["disabled", "unsupported"]


def test_declared_nodes_and_their_errors() -> None:
    nodes = declared_nodes({"nodes": [{"name": "sim-0", "cpu": 64, "mem": "256g", "gpus": 2, "model": "A100"}]}, "cfg")
    assert nodes[0].cpu_milli == 64000 and nodes[0].mem_mib == 262144
    assert [g.uuid for g in nodes[0].gpus] == ["declared-sim-0-0", "declared-sim-0-1"]
    with pytest.raises(ConfigError, match="has no name"):
        declared_nodes({"nodes": [{"gpus": 1}]}, "cfg")
    with pytest.raises(ConfigError, match="is not a count"):
        declared_nodes({"nodes": [{"name": "x", "gpus": "many"}]}, "cfg")


def _home_with_nodes(root: Path, nodes: list[dict[str, Any]]) -> AppContext:
    home = create_home(root, "site")
    config = dict(home.config)
    config["scheduler"] = {"nodes": nodes, "max_wait_s": 60}
    home.config_path.write_text(tomli_w.dumps(config))
    return AppContext(home_root=root)


def test_gpus_shows_shares_used_free_and_holders(tmp_path: Path) -> None:
    app = _home_with_nodes(tmp_path / "site", [{"name": "sim-0", "cpu": 16, "mem": "64g", "gpus": 2, "model": "A100"}])
    runner = CliRunner()
    first = runner.invoke(cli, ["--home", str(app.home_root), "gpus", "--no-probe"])
    assert first.exit_code == 0, first.output
    placed = runner.invoke(cli, ["--home", str(app.home_root), "sched", "submit", "--user", "alice", "-r", "cuda.shares=0.25"])
    assert placed.exit_code == 0 and "placed on sim-0" in placed.output, placed.output
    table = runner.invoke(cli, ["--home", str(app.home_root), "gpus", "--no-probe"]).output
    lines = [line for line in table.splitlines() if line.startswith("sim-0")]
    assert len(lines) == 2
    held = [line for line in lines if "alice#" in line]
    assert len(held) == 1 and "0.25" in held[0] and "0.75" in held[0]


def test_submit_with_a_bad_share_fails_with_one_line(tmp_path: Path) -> None:
    app = _home_with_nodes(tmp_path / "site", [{"name": "sim-0", "gpus": 1, "cpu": 4, "mem": "8g"}])
    result = CliRunner().invoke(cli, ["--home", str(app.home_root), "sched", "submit", "--user", "a", "-r", "cuda.shares=0.333"])
    assert result.exit_code != 0
    assert "not a multiple of the 0.01 GPU quantum" in result.output


def test_an_unknown_policy_in_config_is_a_config_error(tmp_path: Path) -> None:
    app = _home_with_nodes(tmp_path / "site", [{"name": "sim-0", "gpus": 1, "cpu": 4, "mem": "8g"}])
    config = dict(app.home.config)
    config["scheduler"]["policy"] = "magic"
    app.home.config_path.write_text(tomli_w.dumps(config))
    result = CliRunner().invoke(cli, ["--home", str(app.home_root), "sched", "submit", "--user", "a", "-r", "cuda.shares=0.5"])
    assert result.exit_code != 0 and "policy 'magic' is unknown" in result.output


def test_real_nvml_when_a_driver_is_present() -> None:
    result = probe_gpus()
    if result.problem:
        pytest.skip(f"no NVIDIA GPU here: {result.problem}")
    assert all(g.uuid.startswith("GPU-") for g in result.gpus)


def test_submit_uses_the_inventory_from_config(tmp_path: Path) -> None:
    app = _home_with_nodes(tmp_path / "site", [{"name": "sim-0", "gpus": 1, "cpu": 4, "mem": "8g"}])
    CliRunner().invoke(cli, ["--home", str(app.home_root), "gpus", "--no-probe"])
    ticket = submit(app.db, "bob", parse_request(["cuda.shares=1", "cpu=4"]), config=SchedulerConfig())
    assert ticket.node == "sim-0"
    app.close()


def test_queue_commands_quota_release_and_pass(tmp_path: Path) -> None:
    app = _home_with_nodes(tmp_path / "site", [{"name": "sim-0", "gpus": 1, "cpu": 8, "mem": "16g"}])
    home = ["--home", str(app.home_root)]
    runner = CliRunner()

    def call(*args: str) -> str:
        result = runner.invoke(cli, [*home, *args])
        assert result.exit_code == 0, result.output
        return result.output

    assert "quota for alice: 0.5 GPU" in call("sched", "quota", "alice", "0.5")
    assert "placed" in call("sched", "submit", "--user", "alice", "-r", "cuda.shares=0.5")
    assert "queued" in call("sched", "submit", "--user", "alice", "-r", "cuda.shares=0.25")
    assert "placed" in call("sched", "submit", "--user", "bob", "-r", "cuda.shares=0.5", "--priority", "3")
    listing = call("sched", "queue")
    assert listing.count("placed") == 2 and listing.count("queued") == 1
    assert call("sched", "pass") == ""  # nothing can move yet
    released = call("sched", "release", "1")
    assert "request 2 (alice): placed on sim-0" in released
    bad = runner.invoke(cli, [*home, "sched", "release", "99"])
    assert bad.exit_code != 0 and "no scheduler request 99" in bad.output
