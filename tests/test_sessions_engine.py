"""Sessions on a real Docker engine, driven through `reservoir serve` and the CLI as users run them.

The engine is started by the tests (tests/support/docker_engine.py); without one the
module skips, and fails under RESERVOIR_REQUIRE_CLIENTS=1. The site declares one node
with one GPU so fractions are placed; the machine has no NVIDIA runtime, so the device
request is recorded in the session's spec and asserted there instead of passed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reservoir.context import AppContext
from reservoir.home import create_home
from reservoir.models import Channel
from restorer.auth import AccountStore
from tests.support.docker_engine import Engine, python_image_tarball, running_engine
from tests.support.site import RunningServer, add_file, run_server

pytestmark = pytest.mark.slow
IMAGE = "reservoir-test/python:bookworm"
GPU = "declared-gpu-a-0"


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with running_engine() as running:
        import docker

        client = docker.DockerClient(base_url=running.url)
        try:
            client.images.get(IMAGE)
        except docker.errors.ImageNotFound:
            repository, tag = IMAGE.split(":")
            client.api.import_image_from_file(str(python_image_tarball()), repository=repository, tag=tag)
        client.close()
        yield running


@pytest.fixture(scope="module")
def docker_client(engine: Engine) -> Iterator[Any]:
    import docker

    client = docker.DockerClient(base_url=engine.url)
    yield client
    client.close()



@pytest.fixture(scope="module")
def home(engine: Engine, tmp_path_factory: pytest.TempPathFactory, site_wheels: dict[str, Path]) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("sessions") / "site"
    create_home(root, "site")
    config = (root / "reservoir.toml").read_text()
    config += f"""
[server]
auth = "basic"

[scheduler]
max_wait_s = 3600

[[scheduler.nodes]]
name = "gpu-a"
cpu = 8
mem = "16g"
gpus = 1
gpu_mem_mib = 16384
model = "T4"
docker_host = "{engine.url}"

[sessions]
docker_host = "{engine.url}"
default_mem = "512m"
"""
    (root / "reservoir.toml").write_text(config)
    app = AppContext(home_root=root)
    with app.db.transaction() as s:
        channel = Channel(name="py", kind="pypi", upstream="file:///upstream", options={})
        s.add(channel)
        s.flush()
        for path in site_wheels.values():
            add_file(s, app.blobs, channel, path)
    app.close()
    yield root
    _remove_site_containers(engine, root)


def _remove_site_containers(engine: Engine, root: Path) -> None:
    import docker

    client = docker.DockerClient(base_url=engine.url)  # the engine serves this test module only
    for container in client.containers.list(all=True, filters={"label": "io.reservoir.user"}):
        container.remove(force=True)
    for volume in client.volumes.list():
        if volume.name.startswith("reservoir-"):
            volume.remove(force=True)
    client.close()


@pytest.fixture(scope="module")
def tokens(home: Path) -> dict[str, str]:
    store = AccountStore(home / "keys")
    return {"alice": store.new_token("alice", admin=False), "bob": store.new_token("bob", admin=False),
            "boss": store.new_token("boss", admin=True)}


def cli(home: Path, server: RunningServer, token: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RESERVOIR_URL": server.url, "RESERVOIR_TOKEN": token}
    result = subprocess.run([sys.executable, "-m", "reservoir", "--home", str(home), *args], env=env, capture_output=True,
                            text=True, timeout=180)
    if check:
        assert result.returncode == 0, f"{args}: {result.stderr}{result.stdout}"
    return result


def info(home: Path, server: RunningServer, token: str, ref: str) -> dict[str, Any]:
    from sessions.client import Client

    return Client(server.url, f"Bearer {token}").call("GET", f"/api/sessions/{ref}")  # type: ignore[no-any-return]


def wait_for(home: Path, server: RunningServer, token: str, ref: str, *states: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = info(home, server, token, ref)
        if view["state"] in states:
            return view
        assert time.monotonic() < deadline, f"session {ref} stayed {view['state']}: {view['status']}"
        time.sleep(0.3)


def created_id(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout.split()[1]


def gpus_used(home: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "reservoir", "--home", str(home), "gpus", "--no-probe"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    line = next(l for l in out.splitlines() if GPU in l)
    return line.split()[8]  # NODE GROUP GPU MODEL "16384 MiB" MIG UTIL USED


def test_overlay_persists_per_user_and_the_mirror_needs_no_flags(home: Path, tokens: dict[str, str]) -> None:
    with run_server(home) as server:
        alice, bob = tokens["alice"], tokens["bob"]
        first = created_id(cli(home, server, alice, "session", "create", IMAGE, "--name", "a1", "-r", "cpu=1"))
        wait_for(home, server, alice, first, "running")
        installed = cli(home, server, alice, "session", "exec", "a1", "--", "pip", "install", "--user", "alpha", check=False)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        assert "Successfully installed alpha-2.0 beta-1.0" in installed.stdout
        cli(home, server, alice, "session", "rm", "a1")

        second = created_id(cli(home, server, alice, "session", "create", IMAGE, "--name", "a2"))
        wait_for(home, server, alice, second, "running")
        kept = cli(home, server, alice, "session", "exec", "a2", "--", "python3", "-c", "import alpha; print(alpha.__version__)")
        assert kept.stdout.strip() == "2.0"

        theirs = created_id(cli(home, server, bob, "session", "create", IMAGE, "--name", "b1"))
        wait_for(home, server, bob, theirs, "running")
        missing = cli(home, server, bob, "session", "exec", "b1", "--", "python3", "-c", "import alpha", check=False)
        assert missing.returncode == 1 and "No module named 'alpha'" in missing.stdout

        listed = cli(home, server, bob, "session", "ls").stdout
        assert "b1" in listed and "a2" not in listed and "alice" not in listed
        for args in (("logs", second), ("exec", second, "--", "true"), ("rm", second), ("info", "a2")):
            refused = cli(home, server, bob, "session", *args, check=False)
            assert refused.returncode != 0
            assert refused.stderr.strip().splitlines() == [f"error: no session {args[1]} of yours (see `reservoir session ls`)"]
        assert "a2" in cli(home, server, tokens["boss"], "session", "ls").stdout  # an admin sees all

        spec = info(home, server, alice, second)["spec"]
        assert spec["user"].split(":")[0] != "0" and spec["network_mode"] == "host" and spec["privileged"] is False
        assert spec["env"]["PYTHONUSERBASE"] == "/home/work/.local"
        assert spec["env"]["PIP_INDEX_URL"].startswith("http://__token__:***@127.0.0.1:")
        assert spec["volumes"][0]["target"] == "/home/work/.local"
        assert spec["volumes"][0]["upperdir"].endswith("/sessions/users/alice/upper")
        cli(home, server, alice, "session", "rm", second)
        cli(home, server, bob, "session", "rm", theirs)


def test_shares_queue_enforcement_and_release(home: Path, tokens: dict[str, str], docker_client: Any) -> None:
    with run_server(home) as server:
        alice, bob = tokens["alice"], tokens["bob"]
        half = created_id(cli(home, server, alice, "session", "create", IMAGE, "-r", "cuda.shares=0.5"))
        view = wait_for(home, server, alice, half, "running")
        assert view["devices"] == [[GPU, 0.5]]
        spec = view["spec"]
        assert spec["device_ids"] == [GPU] and spec["capabilities"] == [["gpu"]]
        assert spec["gpu_runtime"] is False  # recorded, not passed: this engine has no NVIDIA runtime
        env = spec["env"]
        assert env["CUDA_VISIBLE_DEVICES"] == GPU
        assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
        assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=8192MB"
        seen = cli(home, server, alice, "session", "exec", half, "--", "sh", "-c", "echo $CUDA_MPS_ACTIVE_THREAD_PERCENTAGE")
        assert seen.stdout.strip() == "50"
        assert gpus_used(home) == "0.50"
        metrics = urllib.request.urlopen(f"{server.url}/metrics", timeout=10).read().decode()
        assert 'reservoir_gpu_shares{state="allocated",node="gpu-a",group="default"} 0.5' in metrics
        assert 'reservoir_sessions{state="running",user="alice",group="default"} 1' in metrics

        big = created_id(cli(home, server, bob, "session", "create", IMAGE, "-r", "cuda.shares=0.75"))
        waiting = info(home, server, bob, big)
        assert waiting["state"] == "queued"
        assert waiting["status"] == "waiting: no GPU with 0.75 free; largest free share 0.50 on gpu-a"
        assert "waiting: no GPU with 0.75 free" in cli(home, server, bob, "session", "ls").stdout

        cli(home, server, alice, "session", "rm", half)
        view = wait_for(home, server, bob, big, "running")  # started by itself once the half was freed
        assert view["devices"] == [[GPU, 0.75]]
        assert gpus_used(home) == "0.75"

        docker_client.containers.get(f"{view['spec']['name']}").kill()  # from outside Reservoir
        ended = wait_for(home, server, bob, big, "ended")
        assert ended["exit_code"] == 137 and "signal 9" in ended["status"]
        assert gpus_used(home) == "0.00"


def test_batch_session_records_its_exit_code_and_frees_its_share(home: Path, tokens: dict[str, str]) -> None:
    with run_server(home) as server:
        alice = tokens["alice"]
        batch = created_id(cli(home, server, alice, "session", "create", IMAGE, "--type", "batch", "-r", "cuda.shares=0.25",
                               "--", "sh", "-c", "echo working; sleep 3; exit 3"))  # lives across a usage sample
        ended = wait_for(home, server, alice, batch, "ended")
        assert ended["exit_code"] == 3 and ended["status"] == "exited 3"
        assert cli(home, server, alice, "session", "logs", batch).stdout == "working\n"
        assert gpus_used(home) == "0.00"
        used = next(l for l in cli(home, server, alice, "session", "info", batch).stdout.splitlines() if l.startswith("used:"))
        assert re.fullmatch(r"used: cpu [0-9.]+ s, memory peak [0-9.]+ MiB", used) and not used.endswith(" 0.0 MiB"), used

        subprocess.run([sys.executable, "-m", "reservoir", "--home", str(home), "sched", "quota", "alice", "0.25"], check=True, timeout=60)
        try:
            over = created_id(cli(home, server, alice, "session", "create", IMAGE, "-r", "cuda.shares=0.5"))
            assert info(home, server, alice, over)["status"] == "waiting: quota: alice holds 0.00 of 0.25 shares"
            cli(home, server, alice, "session", "rm", over)  # cancelled while queued
        finally:
            subprocess.run([sys.executable, "-m", "reservoir", "--home", str(home), "sched", "quota", "alice", "none"], check=True, timeout=60)


def test_a_restarted_server_adopts_a_running_session(home: Path, tokens: dict[str, str], docker_client: Any) -> None:
    alice = tokens["alice"]
    with run_server(home) as server:
        kept = created_id(cli(home, server, alice, "session", "create", IMAGE, "--name", "long", "-r", "cuda.shares=0.5"))
        view = wait_for(home, server, alice, kept, "running")
    name = view["spec"]["name"]
    assert docker_client.containers.get(name).status == "running"  # the server's exit leaves sessions running
    with run_server(home) as server:
        time.sleep(3)  # a supervisor pass or two
        again = info(home, server, alice, kept)
        assert again["state"] == "running"
        assert len(docker_client.containers.list(filters={"label": f"io.reservoir.session={kept}"})) == 1
        assert cli(home, server, alice, "session", "exec", "long", "--", "echo", "still").stdout == "still\n"
        env = {**os.environ, "RESERVOIR_URL": server.url, "RESERVOIR_TOKEN": alice}
        shell = subprocess.run([sys.executable, "-m", "reservoir", "session", "shell", "long"], input="echo from-$USER\nexit 4\n",
                               env=env, capture_output=True, text=True, timeout=60)
        assert shell.returncode == 4 and "from-alice" in shell.stdout, shell.stderr
        assert gpus_used(home) == "0.50"
        cli(home, server, alice, "session", "rm", "long")
        assert gpus_used(home) == "0.00"


def test_an_idle_interactive_session_is_warned_in_its_log_then_reclaimed(home: Path, tokens: dict[str, str]) -> None:
    config = home / "reservoir.toml"
    original = config.read_text()
    config.write_text(original.replace('default_mem = "512m"', 'default_mem = "512m"\nidle_timeout_s = 6\nidle_warning_s = 4'))
    try:
        with run_server(home) as server:
            alice = tokens["alice"]
            idle = created_id(cli(home, server, alice, "session", "create", IMAGE, "-r", "cuda.shares=0.5"))
            ended = wait_for(home, server, alice, idle, "ended", timeout=30)
            assert ended["status"].startswith("reclaimed: idle for"), ended
            assert "reservoir: this session is idle; it will be ended at" in cli(home, server, alice, "session", "logs", idle).stdout
            assert gpus_used(home) == "0.00"
    finally:
        config.write_text(original)


def test_admin_imports_an_image_and_builds_the_shared_layer_every_user_sees(home: Path, tokens: dict[str, str]) -> None:
    site = [sys.executable, "-m", "reservoir", "--home", str(home)]
    imported = subprocess.run([*site, "session", "image", "import", str(python_image_tarball()), "reservoir-test/imported:1"],
                              capture_output=True, text=True, timeout=180)
    assert imported.returncode == 0 and imported.stdout.startswith("gpu-a: reservoir-test/imported:1 = sha256:"), imported.stderr
    with run_server(home) as server:
        index = server.url.replace("http://", f"http://__token__:{tokens['boss']}@") + "/pypi/simple/"
        built = subprocess.run([*site, "session", "layer", "build", "--image", "reservoir-test/imported:1", "--index-url", index, "gamma"],
                               capture_output=True, text=True, timeout=180)
        assert built.returncode == 0 and built.stdout.startswith("layer gen-"), built.stderr
        bob = tokens["bob"]
        theirs = created_id(cli(home, server, bob, "session", "create", "reservoir-test/imported:1"))
        wait_for(home, server, bob, theirs, "running")
        seen = cli(home, server, bob, "session", "exec", theirs, "--", "python3", "-c", "import gamma; print(gamma.__version__)")
        assert seen.stdout.strip() == "1.0"
        cli(home, server, bob, "session", "rm", theirs)
    assert not (home / "sessions" / "users" / "bob" / "upper" / "lib").exists()  # the layer is below, not copied up


def test_two_engines_form_one_cluster_and_a_full_node_sends_the_next_session_to_the_other(
    engine: Engine, tmp_path: Path, docker_client: Any
) -> None:
    import docker

    with running_engine("b") as second:
        root = tmp_path / "two"
        create_home(root, "site")
        nodes = "".join(
            f'\n[[scheduler.nodes]]\nname = "{name}"\ncpu = 1\nmem = "1g"\ngpus = 0\ndocker_host = "{url}"\n'
            for name, url in (("node-a", engine.url), ("node-b", second.url))
        )
        (root / "reservoir.toml").write_text((root / "reservoir.toml").read_text() + nodes + '\n[sessions]\ndefault_mem = "256m"\n')
        site = [sys.executable, "-m", "reservoir", "--home", str(root)]
        built = subprocess.run([*site, "session", "image", "build", "--debootstrap", IMAGE], capture_output=True, text=True, timeout=300)
        assert built.returncode == 0, built.stderr
        assert {line.split(":")[0] for line in built.stdout.splitlines()[1:]} == {"node-a", "node-b"}  # on both engines
        token = AccountStore(root / "keys").new_token("alice", admin=False)
        other = docker.DockerClient(base_url=second.url)
        try:
            with run_server(root) as server:
                first = created_id(cli(root, server, token, "session", "create", IMAGE, "-r", "cpu=1"))
                placed = wait_for(root, server, token, first, "running")
                nxt = created_id(cli(root, server, token, "session", "create", IMAGE, "-r", "cpu=1"))
                then = wait_for(root, server, token, nxt, "running")
                assert {placed["node"], then["node"]} == {"node-a", "node-b"}  # the first filled its node
                clients = {"node-a": docker_client, "node-b": other}
                for view in (placed, then):
                    here = clients[view["node"]].containers.list(filters={"label": f"io.reservoir.session={view['id']}"})
                    elsewhere = [c for n, c in clients.items() if n != view["node"]][0]
                    assert [c.name for c in here] == [view["spec"]["name"]]
                    assert not elsewhere.containers.list(all=True, filters={"label": f"io.reservoir.session={view['id']}"})
                third = created_id(cli(root, server, token, "session", "create", IMAGE, "-r", "cpu=1"))
                assert info(root, server, token, third)["status"].startswith("waiting: no node with cpu 1 and mem 256m free")
                cli(root, server, token, "session", "rm", str(placed["id"]))
                wait_for(root, server, token, third, "running")
                assert info(root, server, token, third)["node"] == placed["node"]  # into the room the first left
                for ref in (nxt, third):
                    cli(root, server, token, "session", "rm", ref)
        finally:
            other.close()
            _remove_site_containers(engine, root)
            _remove_site_containers(second, root)
