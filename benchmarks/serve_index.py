"""Serving the index: `reservoir serve` against pypiserver and nginx on the same packages.

    .venv/bin/python benchmarks/serve_index.py [--projects 300] [--seconds 5] [--runs 3]

Sets up (under .bench/serve/) a site with N projects of two 64 KiB wheels
each, published as reservoir publishes; installs pypiserver (from PyPI) into
its own venv and wrk and nginx (from apt) when missing. Then, on 127.0.0.1,
wrk (2 threads, 50 connections) measures requests/s and p99 latency for a
project page as JSON (pip's Accept header), as HTML, and for a file
download, against:

- reservoir: `reservoir serve` (one worker per core);
- nginx: the configuration `reservoir serve --nginx-config` prints;
- pypiserver: `pypi-server run` on a folder of the same files (it has no
  PEP 691 JSON, so its JSON row is its HTML answer).

Prints medians and the ratios reservoir/pypiserver (goal >= 3) and
reservoir/nginx (goal >= 0.5). wrk shares the 2 cores with the server.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reservoir.context import AppContext  # noqa: E402
from reservoir.home import create_home  # noqa: E402
from reservoir.models import Artifact, ArtifactState, Channel, Release  # noqa: E402
from restorer.nginx import NginxSite, render_nginx_config  # noqa: E402
from restorer.publish import publish_site  # noqa: E402

WORK = ROOT / ".bench" / "serve"
PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_wheel(path: Path, name: str, version: str) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{name}-{version}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{name}/data.bin", os.urandom(64 << 10))
        z.writestr(f"{name}-{version}.dist-info/RECORD", "")


def build_site(projects: int) -> tuple[Path, Path]:
    site, files = WORK / "site", WORK / "files"
    marker = WORK / f"ready-{projects}"
    if marker.exists():
        return site, files
    shutil.rmtree(WORK, ignore_errors=True)
    files.mkdir(parents=True)
    create_home(site, "site")
    app = AppContext(home_root=site)
    with app.db.transaction() as s:
        channel = Channel(name="bench", kind="pypi", upstream="file:///bench", options={})
        s.add(channel)
        for i in range(projects):
            name = f"pkg{i:04d}"
            release = Release(channel=channel, name=name, display_name=name, version="1.0", meta={})
            for tag in ("py3-none-any", "cp311-cp311-manylinux_2_17_x86_64"):
                path = files / f"{name}-1.0-{tag}.whl"
                make_wheel(path, name, "1.0")
                sha = app.blobs.put_file(path)
                with zipfile.ZipFile(path) as z:
                    metadata = app.blobs.put_bytes(z.read(f"{name}-1.0.dist-info/METADATA"))
                release.artifacts.append(
                    Artifact(filename=path.name, sha256=sha, size=path.stat().st_size, state=ArtifactState.STORED,
                             meta={"packagetype": "bdist_wheel", "aux_blobs": {"metadata": metadata}})
                )
            s.add(release)
    publish_site(app)
    app.close()
    marker.touch()
    return site, files


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def ensure_tools() -> Path:
    subprocess.run([str(ROOT / "scripts" / "install-system-packages.sh"), "wrk", "nginx"], check=True)
    venv = ROOT / ".bench" / "pypiserver-venv"
    if not (venv / "bin" / "pypi-server").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "pypiserver>=2", "waitress"], check=True)
    return venv / "bin" / "pypi-server"


def start_servers(site: Path, files: Path, pypiserver: Path) -> dict[str, tuple[subprocess.Popen[bytes], str]]:
    servers = {}
    port = free_port()
    servers["reservoir"] = (
        subprocess.Popen(
            [sys.executable, "-m", "reservoir", "--home", str(site), "serve", "--host", "127.0.0.1", "--port", str(port),
             "--watch-interval", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
        f"http://127.0.0.1:{port}",
    )
    wait_port(port)
    port = free_port()
    prefix = WORK / "nginx"
    shutil.rmtree(prefix, ignore_errors=True)
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(render_nginx_config(NginxSite(site / "trees", f"127.0.0.1:{port}", None), standalone=True,
                                        prefix=prefix, user="root"))
    servers["nginx"] = (
        subprocess.Popen(["nginx", "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"], stderr=subprocess.DEVNULL),
        f"http://127.0.0.1:{port}",
    )
    wait_port(port)
    port = free_port()
    servers["pypiserver"] = (
        subprocess.Popen(
            [str(pypiserver), "run", "-i", "127.0.0.1", "-p", str(port), "--server", "auto", "-a", ".", "-P", ".",
             str(files)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
        f"http://127.0.0.1:{port}",
    )
    wait_port(port)
    return servers


def wrk(url: str, seconds: int, accept: str | None) -> tuple[float, float]:
    cmd = ["wrk", "-t2", "-c50", f"-d{seconds}s", "--latency", url]
    if accept:
        cmd[1:1] = ["-H", f"Accept: {accept}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p99_ms = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} error responses")
    return rps, p99_ms


def urls(tool: str, base: str) -> dict[str, tuple[str, str | None]]:
    project = "pkg0042"
    if tool == "pypiserver":
        page = f"{base}/simple/{project}/"
        file = f"{base}/packages/{project}-1.0-py3-none-any.whl"
    else:
        page = f"{base}/pypi/simple/{project}/"
        file = None
    return {"json page": (page, PIP_ACCEPT), "html page": (page, "text/html"), "file": (file or "", None)}


def reservoir_file_url(site: Path, base: str) -> str:
    import json

    page = json.loads((site / "trees" / "pypi" / "current" / "simple" / "pkg0042" / "index.json").read_bytes())
    return f"{base}/pypi/" + page["files"][0]["url"].removeprefix("../../")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    pypiserver = ensure_tools()
    site, files = build_site(args.projects)
    servers = start_servers(site, files, pypiserver)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for _ in range(args.runs):
            for tool, (_, base) in servers.items():
                for scenario, (url, accept) in urls(tool, base).items():
                    if scenario == "file" and tool != "pypiserver":
                        url = reservoir_file_url(site, base)
                    results.setdefault((tool, scenario), []).append(wrk(url, args.seconds, accept))
    finally:
        for process, _ in servers.values():
            process.send_signal(signal.SIGTERM)
        for process, _ in servers.values():
            process.wait(timeout=30)
    print(f"{args.projects} projects; wrk -t2 -c50 -d{args.seconds}s; medians of {args.runs} runs")
    print(f"{'scenario':<10} {'tool':<11} {'req/s':>9} {'p99 ms':>8}")
    medians = {}
    for (tool, scenario), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        rps = statistics.median(r[0] for r in runs)
        p99 = statistics.median(r[1] for r in runs)
        medians[(tool, scenario)] = rps
        print(f"{scenario:<10} {tool:<11} {rps:9.0f} {p99:8.2f}")
    for scenario in ("json page", "html page", "file"):
        ours = medians[("reservoir", scenario)]
        print(
            f"{scenario}: reservoir/pypiserver {ours / medians[('pypiserver', scenario)]:.2f}x (goal >= 3), "
            f"reservoir/nginx {ours / medians[('nginx', scenario)]:.2f}x (goal >= 0.5)"
        )


if __name__ == "__main__":
    main()
