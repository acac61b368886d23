"""Sessions benchmark: `session create` to the user's command running, against a bare `docker run`; one scheduling pass.

    .venv/bin/python benchmarks/sessions.py [--runs 5] [--requests 1000] [--gpus 1000] [--skip-engine]

Start-up (needs root, dockerd and debootstrap, as the engine tests do): starts its
own dockerd (tests/support/docker_engine.py, data root
/var/cache/reservoir-test-docker-bench), imports the cached debootstrap Python image,
makes a site under .bench/sessions/ and runs `reservoir serve` on 127.0.0.1. Each
run, taking turns, times from just before the call to the moment the container's
command writes its first timestamp (`date +%s.%N` into ~/.local, read back from the
user's overlay upper directory on the host; container and host share the clock):

- `reservoir session create --type batch` (a CLI process, interpreter start-up
  included) against `docker run -d` (the Go CLI) with the same image, user,
  limits, host network, tmpfs, the same overlay volume at ~/.local and a config
  folder with the same files bind-mounted read-only;
- the same through libraries: POST /api/sessions (sessions.client) against the
  docker SDK's `containers.run(detach=True)` with those options.

Medians; the ratio is reservoir / docker. The goal is at most 1.5x.

Scheduling: a SQLite database with a declared cluster of --gpus GPUs (8 per node)
and --requests queued requests (a seeded mix of 0.25 / 0.5 / 1 / 2 GPU requests),
inserted as rows; one `run_pass` (the default policy, fgd-bf) is timed. Goal: under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

IMAGE = "reservoir-bench/python:1"
BENCH = REPO / ".bench" / "sessions"


def wait_for_file(path: Path, timeout_s: float = 60) -> float:
    """The timestamp the container wrote into `path` (polled every 5 ms)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            text = path.read_text().strip()
            if text:
                return float(text)
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    raise TimeoutError(f"{path} never appeared")


def stamp_command(tag: str) -> list[str]:
    return ["sh", "-c", f"date +%s.%N > /home/work/.local/{tag}.tmp && mv /home/work/.local/{tag}.tmp /home/work/.local/{tag}"]


def docker_run_args(url: str, spec: dict[str, Any], name: str, config_dir: Path, command: list[str]) -> list[str]:
    """`docker run -d` with what the session's container got (from its recorded spec)."""
    args = ["docker", "-H", url, "run", "-d", "--name", name, "--user", spec["user"], "--network", spec["network_mode"],
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--init", "-w", spec["working_dir"]]
    if spec["nano_cpus"]:
        args += ["--cpus", f"{spec['nano_cpus'] / 1e9:g}"]
    if spec["mem_limit_bytes"]:
        args += ["--memory", str(spec["mem_limit_bytes"]), "--memory-swap", str(spec["mem_limit_bytes"])]
    for target, options in spec["tmpfs"].items():
        args += ["--tmpfs", f"{target}:{options}" if options else target]
    for volume in spec["volumes"]:
        args += ["--mount", f"type=volume,src={volume['name']},dst={volume['target']}"]
    for bind in spec["binds"]:
        source = str(config_dir) if bind["target"] == "/etc/reservoir" else bind["source"]
        args += ["--mount", f"type=bind,src={source},dst={bind['target']}" + (",readonly" if bind["read_only"] else "")]
    for key, value in spec["env"].items():
        args += ["-e", f"{key}={value}"]
    for key, value in spec["labels"].items():
        if key != "io.reservoir.site":  # not the site's: the supervisor would stop it as unaccounted
            args += ["--label", f"{key}={value}"]
    return [*args, spec["image"], *command]


def sdk_run_kwargs(spec: dict[str, Any], name: str, config_dir: Path) -> dict[str, Any]:
    import docker

    mounts = [docker.types.Mount(v["target"], v["name"], type="volume") for v in spec["volumes"]]
    mounts += [
        docker.types.Mount(b["target"], str(config_dir) if b["target"] == "/etc/reservoir" else b["source"], type="bind",
                           read_only=b["read_only"])
        for b in spec["binds"]
    ]
    return dict(name=name, user=spec["user"], network_mode=spec["network_mode"], cap_drop=["ALL"],
                security_opt=["no-new-privileges"], init=True, working_dir=spec["working_dir"], nano_cpus=spec["nano_cpus"],
                mem_limit=spec["mem_limit_bytes"], memswap_limit=spec["mem_limit_bytes"], tmpfs=spec["tmpfs"], mounts=mounts,
                environment=spec["env"], detach=True)


def engine_benchmark(runs: int) -> dict[str, Any]:
    import docker

    from reservoir.home import create_home
    from restorer.auth import AccountStore
    from sessions.client import Client
    from sessions.mirror import Mirror, config_files
    from tests.support.docker_engine import python_image_tarball, running_engine
    from tests.support.site import run_server

    if BENCH.exists():
        shutil.rmtree(BENCH)
    BENCH.mkdir(parents=True)
    with running_engine("bench") as engine:
        client = docker.DockerClient(base_url=engine.url)
        try:
            client.images.get(IMAGE)
        except docker.errors.ImageNotFound:
            repository, tag = IMAGE.split(":")
            client.api.import_image_from_file(str(python_image_tarball()), repository=repository, tag=tag)
        home = BENCH / "site"
        create_home(home, "site")
        with (home / "reservoir.toml").open("a") as config:
            config.write(f'\n[sessions]\ndocker_host = "{engine.url}"\ndefault_mem = "512m"\n')
        token = AccountStore(home / "keys").new_token("alice", admin=False)
        upper = home / "sessions" / "users" / "alice" / "upper"
        env = {**os.environ, "RESERVOIR_TOKEN": token}
        times: dict[str, list[float]] = {"reservoir-cli": [], "docker-cli": [], "reservoir-api": [], "docker-sdk": []}
        try:
            with run_server(home) as server:
                env["RESERVOIR_URL"] = server.url
                api = Client(server.url, f"Bearer {token}")
                # A first session (untimed) makes the user's uid, overlay volume and folders, and gives the spec to copy.
                first = api.call("POST", "/api/sessions", {"image": IMAGE, "resources": ["cpu=1"], "name": "warm", "type": "batch",
                                                           "command": stamp_command("warm")})
                wait_for_file(upper / "warm")
                spec = api.call("GET", f"/api/sessions/{first['id']}")["spec"]
                api.call("DELETE", f"/api/sessions/{first['id']}")
                uid = int(spec["user"].split(":")[0])
                config_dir = BENCH / "peer-etc"  # what the session's /etc/reservoir holds, made the same way
                config_dir.mkdir()
                for name, text in config_files(Mirror(server.url, "alice", "", (), "")).items():
                    (config_dir / name).write_text(text)
                    (config_dir / name).chmod(0o400)
                    os.chown(config_dir / name, uid, uid)
                config_dir.chmod(0o500)
                os.chown(config_dir, uid, uid)

                def reservoir_cli(tag: str) -> Callable[[], None]:
                    args = [sys.executable, "-m", "reservoir", "session", "create", IMAGE, "--type", "batch", "--name", tag,
                            "-r", "cpu=1", "--", *stamp_command(tag)]
                    return lambda: subprocess.run(args, env=env, check=True, capture_output=True, timeout=120)

                def docker_cli(tag: str) -> Callable[[], None]:
                    args = docker_run_args(engine.url, spec, f"bench-{tag}", config_dir, stamp_command(tag))
                    return lambda: subprocess.run(args, check=True, capture_output=True, timeout=120)

                def reservoir_api(tag: str) -> Callable[[], None]:
                    body = {"image": IMAGE, "resources": ["cpu=1"], "name": tag, "type": "batch", "command": stamp_command(tag)}
                    return lambda: api.call("POST", "/api/sessions", body)

                def docker_sdk(tag: str) -> Callable[[], None]:
                    kwargs = sdk_run_kwargs(spec, f"bench-{tag}", config_dir)
                    return lambda: client.containers.run(IMAGE, stamp_command(tag), **kwargs)

                makers = {"reservoir-cli": reservoir_cli, "docker-cli": docker_cli, "reservoir-api": reservoir_api,
                          "docker-sdk": docker_sdk}
                for run in range(runs):
                    for kind, make in makers.items():
                        tag = f"{kind}-{run}"
                        call = make(tag)
                        started = time.time()
                        call()
                        times[kind].append(wait_for_file(upper / tag) - started)
                        if kind.startswith("reservoir"):
                            deadline = time.monotonic() + 30
                            while api.call("GET", f"/api/sessions/{tag}")["state"] != "ended" and time.monotonic() < deadline:
                                time.sleep(0.05)
                            api.call("DELETE", f"/api/sessions/{tag}")
                        else:
                            client.api.wait(f"bench-{tag}", timeout=30)
                            client.api.remove_container(f"bench-{tag}", force=True)
        finally:
            for container in client.containers.list(all=True, filters={"label": "io.reservoir.user"}):
                container.remove(force=True)
            client.close()
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {
        "runs": runs,
        "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "median_s": {k: round(v, 3) for k, v in medians.items()},
        "ratio_cli": round(medians["reservoir-cli"] / medians["docker-cli"], 2),
        "ratio_api": round(medians["reservoir-api"] / medians["docker-sdk"], 2),
    }


def scheduling_benchmark(requests: int, gpus: int, seed: int = 0) -> dict[str, Any]:
    from reservoir.db import open_database
    from sessions.inventory import GpuInfo, NodeInventory, sync_inventory
    from sessions.models import RequestState, SchedRequest
    from sessions.queue import SchedulerConfig, run_pass

    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="reservoir-sched-bench-") as tmp:
        db = open_database(f"sqlite:///{Path(tmp) / 'sched.db'}")
        per_node = 8
        nodes = [
            NodeInventory(f"node-{n:03d}", 96_000, 1024 * 1024,
                          tuple(GpuInfo(i, "A100", f"GPU-{n:03d}-{i}", 81920, "disabled") for i in range(per_node)), "declared")
            for n in range(gpus // per_node)
        ]
        sync_inventory(db, nodes)
        now = datetime.now(timezone.utc)
        shapes = [(250, 1)] * 30 + [(500, 1)] * 30 + [(1000, 1)] * 30 + [(1000, 2)] * 10  # (milli per GPU, GPUs) in percent
        with db.write_transaction() as session:
            for i in range(requests):
                milli, count = rng.choice(shapes)
                session.add(SchedRequest(
                    user=f"user{i % 50}", resource_group="default", priority=rng.choice([0, 0, 0, 5]), gpu_milli=milli,
                    num_gpu=count, cpu_milli=rng.choice([1000, 2000, 4000]), mem_mib=rng.choice([4096, 8192, 16384]),
                    gpu_models=[], label=f"bench {i}", state=RequestState.QUEUED, submitted_at=now,
                ))
        config = SchedulerConfig(seed=seed)
        started = time.perf_counter()
        placed = run_pass(db, config=config)
        elapsed = time.perf_counter() - started
        db.dispose()
    return {"requests": requests, "gpus": len(nodes) * per_node, "nodes": len(nodes), "placed": len(placed),
            "policy": config.default_policy, "pass_s": round(elapsed, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=1000)
    parser.add_argument("--skip-engine", action="store_true", help="only the scheduling pass")
    opts = parser.parse_args()
    result: dict[str, Any] = {"scheduling": scheduling_benchmark(opts.requests, opts.gpus)}
    sched = result["scheduling"]
    print(f"scheduling pass: {sched['requests']} queued over {sched['gpus']} GPUs ({sched['nodes']} nodes), {sched['policy']}: "
          f"{sched['pass_s']:.3f} s, {sched['placed']} placed (goal < 1 s)")
    if not opts.skip_engine:
        result["engine"] = engine_benchmark(opts.runs)
        engine = result["engine"]
        for kind, median in engine["median_s"].items():
            print(f"{kind:14} median {median:.3f} s  runs {engine['seconds'][kind]}")
        print(f"create -> command running: reservoir CLI / docker CLI = {engine['ratio_cli']}x, "
              f"API / SDK = {engine['ratio_api']}x (goal <= 1.5x)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
