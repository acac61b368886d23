"""What a session's container is given, computed without an engine: GPU enforcement, mirror, limits, refusals."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from reservoir.errors import ReservoirError
from sessions.backend import Bind, OverlayVolume, mask_secret
from sessions.docker_backend import check_spec
from sessions.enforcement import DeviceShare, HamiConfig, gpu_enforcement
from sessions.mirror import AptSource, Mirror, config_files, pip_conf
from sessions.resources import Request
from sessions.spec import SessionPlan, container_spec
from sessions.waiting import DeviceFree, NodeFree, Reservation, waiting_reason

OVERLAY = OverlayVolume("v", "/home/work/.local", "/site/layer/gen-1", "/site/users/alice/upper", "/site/users/alice/work")


def plan(**changes: object) -> SessionPlan:
    values: dict[str, object] = dict(
        session_id=7, site_id="0123456789abcdef", user="alice", uid=20001, image="py:site", kind="interactive", command=(),
        cpu_milli=2000, mem_mib=8192, shares=(DeviceShare("GPU-aaaa", 500, 81920),), overlay=OVERLAY,
        config_dir="/site/sessions/run/7/etc", mirror=Mirror("http://10.0.0.5:8080", "__token__", "rsv_secret"),
    )
    values.update(changes)
    return SessionPlan(**values)  # type: ignore[arg-type]


def test_half_a_gpu_gets_the_device_by_uuid_and_mps_limits_from_the_share_and_its_memory() -> None:
    gpu = gpu_enforcement([DeviceShare("GPU-aaaa", 500, 81920)])
    assert gpu.device_ids == ("GPU-aaaa",) and gpu.capabilities == (("gpu",),)
    assert gpu.env == {
        "CUDA_VISIBLE_DEVICES": "GPU-aaaa",
        "NVIDIA_VISIBLE_DEVICES": "GPU-aaaa",
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "50",
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=40960MB",
    }
    assert gpu.binds == ()


def test_hami_caps_and_preload_only_when_the_site_configures_the_library() -> None:
    gpu = gpu_enforcement([DeviceShare("GPU-aaaa", 250, 16000)], HamiConfig("/opt/hami/libvgpu.so"))
    assert gpu.env["CUDA_DEVICE_MEMORY_LIMIT"] == "4000m"
    assert gpu.env["CUDA_DEVICE_SM_LIMIT"] == "25"
    assert gpu.env["LD_PRELOAD"] == "/usr/local/vgpu/libvgpu.so"
    assert gpu.binds == (("/opt/hami/libvgpu.so", "/usr/local/vgpu/libvgpu.so"),)


def test_whole_gpus_get_no_caps_and_no_gpu_hides_every_device() -> None:
    whole = gpu_enforcement([DeviceShare("GPU-a", 1000, 80000), DeviceShare("GPU-b", 1000, 80000)], HamiConfig("/x.so"))
    assert whole.env == {"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b", "NVIDIA_VISIBLE_DEVICES": "GPU-a,GPU-b"}
    none = gpu_enforcement([])
    assert not none.wants_gpu and none.env == {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}


def test_unknown_device_memory_sets_no_memory_limit_rather_than_zero() -> None:
    gpu = gpu_enforcement([DeviceShare("declared-a-0", 300, 0)], HamiConfig("/x.so"))
    assert "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT" not in gpu.env and "CUDA_DEVICE_MEMORY_LIMIT" not in gpu.env
    assert gpu.env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "30"


def test_container_spec_runs_as_the_user_with_limits_overlay_and_read_only_config() -> None:
    spec = container_spec(plan())
    assert spec.user == "20001:20001" and not spec.privileged and spec.network_mode == "host"
    assert spec.nano_cpus == 2_000_000_000 and spec.mem_limit_bytes == 8192 * 1024 * 1024
    assert spec.volumes == (OVERLAY,)
    assert OVERLAY.driver_opts == {
        "type": "overlay",
        "device": "overlay",
        "o": "lowerdir=/site/layer/gen-1,upperdir=/site/users/alice/upper,workdir=/site/users/alice/work",
    }
    assert spec.binds == (Bind("/site/sessions/run/7/etc", "/etc/reservoir", read_only=True),)
    assert spec.command == ("sleep", "infinity")
    assert spec.env["PYTHONUSERBASE"] == "/home/work/.local"
    assert spec.env["PIP_INDEX_URL"] == "http://__token__:rsv_secret@10.0.0.5:8080/pypi/simple/"
    assert spec.env["UV_INDEX_URL"] == spec.env["PIP_INDEX_URL"]
    assert spec.env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    assert spec.tmpfs == {"/home/work": "uid=20001,gid=20001,mode=0700"}
    assert spec.labels["io.reservoir.session"] == "7"
    assert spec.as_record()["env"]["PIP_INDEX_URL"] == "http://__token__:***@10.0.0.5:8080/pypi/simple/"


def test_batch_runs_its_command_and_apt_sources_are_mounted_only_when_the_site_has_apt() -> None:
    spec = container_spec(plan(kind="batch", command=("python", "train.py")))
    assert spec.command == ("python", "train.py")
    with_apt = container_spec(plan(mirror=Mirror("http://s:1", apt=(AptSource("debian", ("bookworm",)),))))
    assert Bind("/site/sessions/run/7/etc/reservoir.sources", "/etc/apt/sources.list.d/reservoir.sources") in with_apt.binds


def test_mirror_files_point_pip_r_and_apt_at_the_site() -> None:
    mirror = Mirror("http://s:8080/", "alice", "p@ss:word", (AptSource("deb12", ("bookworm", "bookworm-updates")),), "KEY")
    files = config_files(mirror)
    assert "index-url = http://alice:p%40ss%3Aword@s:8080/pypi/simple/\n" in files["pip.conf"]
    assert files["Rprofile"] == 'local({ options(repos = c(site = "http://alice:p%40ss%3Aword@s:8080/cran/")) })\n'
    assert files["reservoir.sources"].splitlines() == [
        "Types: deb",
        "URIs: http://alice:p%40ss%3Aword@s:8080/apt/deb12/",
        "Suites: bookworm bookworm-updates",
        "Components: main",
        "Signed-By: /etc/reservoir/site-archive-key.asc",
    ]
    assert files["site-archive-key.asc"] == "KEY"
    assert "index-url = http://s:1/pypi/simple/" in pip_conf(Mirror("http://s:1"))  # an open site: no credentials


def test_secrets_are_masked_in_records() -> None:
    assert mask_secret("http://__token__:rsv_x@h:1/pypi/simple/") == "http://__token__:***@h:1/pypi/simple/"
    assert mask_secret("http://h:1/pypi/simple/") == "http://h:1/pypi/simple/"
    assert mask_secret("50") == "50"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"privileged": True}, "privileged containers are never started"),
        ({"network_mode": "bridge"}, "network 'bridge' is not allowed"),
        ({"binds": (Bind("/var/run/docker.sock", "/var/run/docker.sock"),)}, "the engine's socket may not be mounted"),
    ],
)
def test_the_backend_refuses_what_would_hand_over_the_machine(change: dict[str, object], message: str) -> None:
    from dataclasses import replace

    with pytest.raises(ReservoirError, match=message):
        check_spec(replace(container_spec(plan()), **change))  # type: ignore[arg-type]


NODES = [NodeFree("gpu-a", 8000, 16384), NodeFree("gpu-b", 8000, 16384)]
DEVICES = [DeviceFree("gpu-a", "a0", "T4", 250), DeviceFree("gpu-b", "b0", "T4", 100)]


def test_waiting_reasons_in_words() -> None:
    half = Request(500, 1, 1000, 1024)
    assert waiting_reason(half, "alice", 0, None, NODES, DEVICES, None) == (
        "waiting: no GPU with 0.50 free; largest free share 0.25 on gpu-a"
    )
    assert waiting_reason(half, "alice", 2000, 2000, NODES, DEVICES, None) == "waiting: quota: alice holds 2.00 of 2.00 shares"
    since = datetime(2026, 12, 2, 10, 2, tzinfo=timezone.utc)
    assert waiting_reason(half, "alice", 0, None, NODES, DEVICES, Reservation("session 41", 5, since)) == (
        "waiting: behind session 41 (priority 5), reserved since 10:02"
    )
    assert waiting_reason(Request(0, 0, 16000, 1024), "bob", 0, None, NODES, DEVICES, None) == (
        "waiting: no node with cpu 16 and mem 1024m free; most free: cpu 8, mem 16384m on gpu-a"
    )
    assert waiting_reason(Request(1000, 2, 1000, 1024), "bob", 0, None, NODES, DEVICES, None) == (
        "waiting: no node with 2 free GPUs; most is 0 on gpu-a"
    )
