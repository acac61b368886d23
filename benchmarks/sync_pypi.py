"""Sync benchmark: reservoir vs bandersnatch against one local upstream.

    .venv/bin/python benchmarks/sync_pypi.py

Sets up what it needs under .bench/ (ignored by git) and reuses it on reruns:
bandersnatch in its own virtualenv (pip, from the host's configured index),
the real package files of about 50 popular projects and their dependency
closure (`pip download`, host's configured index), and a synthetic upstream
of 1,000 tiny generated wheels. Both upstreams are served on 127.0.0.1 by
benchmarks/_upstream.py, which speaks what each mirror needs.

Fairness: the upstream carries only the files pip resolved for the closure,
and bandersnatch's allowlist gets every project of that closure, so both
mirrors fetch the same files; the table shows files and bytes each fetched.

Measures (medians of --runs timed runs; each run is a whole CLI process, so
interpreter start-up counts for both):
  1. initial sync of the real closure, into an empty home / mirror;
  2. no-change re-sync of the same;
  3. no-change re-sync of 1,000 synthetic projects (goal: reservoir < 5 s).
"""

from __future__ import annotations

import argparse
import hashlib
import base64
import io
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import signal
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _upstream import Counters, RunningUpstream, UpstreamIndex, scan_folder, serve_upstream  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / ".bench"
RESERVOIR = REPO / ".venv" / "bin" / "reservoir"
RESERVOIR_PYTHON = REPO / ".venv" / "bin" / "python"
MIRROR_ONLY = REPO / "benchmarks" / "_reservoir_mirror_only.py"
BANDERSNATCH_VENV = BENCH / "bandersnatch-venv"
BANDERSNATCH_REQUIREMENT = "bandersnatch>=6.5,<7"

# Popular, mostly pure-python projects; pip adds their dependency closure.
ROOT_PROJECTS = (
    "requests click flask jinja2 attrs rich pydantic httpx urllib3 certifi idna charset-normalizer six "
    "python-dateutil pytz pyyaml packaging setuptools wheel typing-extensions markupsafe werkzeug itsdangerous "
    "pygments anyio tomlkit filelock platformdirs virtualenv pytest tqdm toolz more-itertools importlib-metadata "
    "jsonschema docutils sqlalchemy alembic boto3 fastapi uvicorn cachetools decorator wrapt tabulate psutil "
    "sortedcontainers networkx pyparsing cryptography"
).split()


# ---------------------------------------------------------------- set-up


def run_quiet(cmd: Sequence[str | Path], log: Path, timeout: float | None = None, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        return subprocess.run([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                              env=env, check=False)


def ensure_bandersnatch() -> Path:
    """bandersnatch in its own venv, so its pins never touch the project's."""
    exe = BANDERSNATCH_VENV / "bin" / "bandersnatch"
    if exe.exists():
        return exe
    print("installing bandersnatch into .bench/bandersnatch-venv ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(BANDERSNATCH_VENV)], check=True)
    result = run_quiet([BANDERSNATCH_VENV / "bin" / "pip", "install", "-q", BANDERSNATCH_REQUIREMENT],
                       BENCH / "logs" / "bandersnatch-install.log")
    if result.returncode != 0 or not exe.exists():
        sys.exit(f"error: installing {BANDERSNATCH_REQUIREMENT} failed; see {BENCH / 'logs/bandersnatch-install.log'}")
    return exe


def bandersnatch_version(exe: Path) -> str:
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip()


def ensure_real_files(roots: Sequence[str]) -> Path:
    """The closure of `roots` as pip resolves it, downloaded once from the host's index."""
    key = hashlib.sha256(" ".join(sorted(roots)).encode()).hexdigest()[:12]
    folder = BENCH / f"pypi-files-{key}"
    done = folder / ".complete"
    if done.exists():
        return folder
    print(f"downloading the closure of {len(roots)} projects with pip into {folder} ...",
          flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    result = run_quiet([sys.executable, "-m", "pip", "download", "-q", "--dest", folder, *roots],
                       BENCH / "logs" / "pip-download.log")
    if result.returncode != 0:
        sys.exit(f"error: pip download failed; see {BENCH / 'logs/pip-download.log'}")
    done.write_text("\n".join(roots) + "\n")
    return folder


def tiny_wheel(name: str, version: str) -> tuple[str, bytes]:
    """A minimal valid wheel: one module, METADATA, WHEEL and a RECORD with hashes."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    members = {
        f"{dist}/__init__.py": f'"""{name}: generated for the sync benchmark."""\n__version__ = "{version}"\n'.encode(),
        f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                             f"Summary: synthetic project {name}\nLicense: MIT\nRequires-Python: >=3.8\n").encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: reservoir-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record_lines = []
    for path, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record_lines.append(f"{path},sha256={digest},{len(data)}")
    record_lines.append(f"{info}/RECORD,,")
    members[f"{info}/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in members.items():
            zf.writestr(zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return f"{dist}-{version}-py3-none-any.whl", buffer.getvalue()


def synthetic_names(count: int) -> list[str]:
    return [f"synth-project-{i:04d}" for i in range(count)]


def ensure_synthetic_files(count: int) -> Path:
    folder = BENCH / f"synthetic-{count}"
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in synthetic_names(count):
        filename, data = tiny_wheel(name, "1.0.0")
        (folder / filename).write_bytes(data)
    done.write_text(f"{count}\n")
    return folder


# ---------------------------------------------------------------- mirrors


@dataclass
class Outcome:
    """One timed CLI run and what the upstream served during it."""

    seconds: float
    ok: bool
    files: int
    file_bytes: int
    requests: int
    timed_out: bool = False
    note: str = ""


@dataclass
class Mirror:
    """A mirror tool under test; `prepare` makes an empty target, `sync` runs one sync."""

    name: str
    prepare: Callable[[Path, RunningUpstream, list[str]], None]
    command: Callable[[Path], list[str]]
    stored_files: Callable[[Path], int]
    # A re-sync that ignores what the tool remembers and checks every project
    # against the upstream (None: the tool's normal re-sync already does).
    recheck_command: Callable[[Path], list[str]] | None = None
    # The (project, version) pairs a sync chose, for tools that select (None: all upstream).
    selected_releases: Callable[[Path], list[tuple[str, str]]] | None = None


def run_timed(cmd: list[str], log: Path, timeout: float, env: dict[str, str]) -> tuple[float, int, bool]:
    """Wall time, exit status and whether it was killed at `timeout`.

    A timer kills the run instead of `subprocess.run(timeout=...)`, whose wait
    polls every 50 ms and so rounds every measurement up to that grain.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    killed = threading.Event()
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

        def kill() -> None:
            killed.set()
            os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            returncode = proc.wait()
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
    return (timeout if killed.is_set() else seconds), returncode, killed.is_set()


def timed(cmd: list[str], upstream: RunningUpstream, log: Path, timeout: float) -> Outcome:
    # Start every run with no dirty pages from the previous one: reservoir
    # fsyncs its blobs and bandersnatch does not, so without this one tool's
    # fsync would pay for the other's deferred writeback.
    os.sync()
    upstream.counters.reset()
    # TMPDIR: `bandersnatch mirror --force-check` parks its status file there.
    seconds, returncode, timed_out = run_timed(cmd, log, timeout, {**os.environ, "TMPDIR": str(log.parent)})
    ok = returncode == 0 and not timed_out
    c: Counters = upstream.counters
    return Outcome(seconds=seconds, ok=ok, files=c.files, file_bytes=c.file_bytes, requests=c.requests,
                   timed_out=timed_out)


def bandersnatch_mirror(exe: Path, workers: int) -> Mirror:
    def prepare(target: Path, upstream: RunningUpstream, projects: list[str]) -> None:
        allowlist = "\n".join(f"    {p}" for p in sorted(projects))
        # "name==version" lines pin releases, which needs the release filter too.
        plugins = ["allowlist_project"] + (["allowlist_release"] if any("==" in p for p in projects) else [])
        (target / "mirror").mkdir(parents=True)
        (target / "bandersnatch.conf").write_text(
            "[mirror]\n"
            f"directory = {target / 'mirror'}\n"
            f"master = {upstream.base_url}\n"
            # The upstream is plain http on 127.0.0.1; bandersnatch has an option for that.
            "allow-non-https = true\n"
            "json = false\n"
            "release-files = true\n"
            "hash-index = false\n"
            "simple-format = ALL\n"
            "compare-method = hash\n"
            "stop-on-error = true\n"
            "timeout = 60\n"
            "global-timeout = 3600\n"
            f"workers = {workers}\n"
            "[plugins]\n"
            "enabled =\n"
            + "".join(f"    {plugin}\n" for plugin in plugins)
            + 
            "[allowlist]\n"
            f"packages =\n{allowlist}\n"
        )

    def command(target: Path) -> list[str]:
        return [str(exe), "-c", str(target / "bandersnatch.conf"), "mirror"]

    def stored(target: Path) -> int:
        packages = target / "mirror" / "web" / "packages"
        return sum(1 for p in packages.rglob("*") if p.is_file()) if packages.exists() else 0

    def recheck(target: Path) -> list[str]:
        # Without its saved serial, bandersnatch fetches every project's JSON
        # and re-hashes every stored file: the slow run its users report.
        return [str(exe), "-c", str(target / "bandersnatch.conf"), "mirror", "--force-check"]

    return Mirror(name="bandersnatch", prepare=prepare, command=command, stored_files=stored, recheck_command=recheck)


def reservoir_mirror(with_vetting: bool) -> Mirror:
    def prepare(target: Path, upstream: RunningUpstream, projects: list[str]) -> None:
        home = target / "home"
        log = target / "setup.log"
        for cmd in (
            [RESERVOIR, "--home", home, "init", "--role", "hub"],
            [RESERVOIR, "--home", home, "channel", "add", "bench", "--kind", "pypi",
             "--upstream", upstream.simple_url, *reservoir_channel_options(projects)],
        ):
            result = run_quiet(cmd, log)
            if result.returncode != 0:
                sys.exit(f"error: {' '.join(map(str, cmd[3:5]))} failed: {log.read_text()[-2000:]}")

    def command(target: Path) -> list[str]:
        if with_vetting:
            return [str(RESERVOIR), "--home", str(target / "home"), "sync", "bench"]
        return [str(RESERVOIR_PYTHON), str(MIRROR_ONLY), "--home", str(target / "home"), "sync", "bench"]

    def stored(target: Path) -> int:
        return int(query_home(target, "SELECT count(*) FROM artifacts WHERE state = 'stored'")[0][0])

    def selected(target: Path) -> list[tuple[str, str]]:
        rows = query_home(target, "SELECT name, version FROM releases WHERE state = 'active' ORDER BY name, version")
        return [(str(name), str(version)) for name, version in rows]

    return Mirror(name="reservoir", prepare=prepare, command=command, stored_files=stored,
                  selected_releases=selected)


def query_home(target: Path, sql: str) -> list[tuple[object, ...]]:
    """Read reservoir's catalog (SQLite in the home) to check what a sync stored."""
    with closing(sqlite3.connect(target / "home" / "reservoir.db")) as db:
        return db.execute(sql).fetchall()


def reservoir_channel_options(projects: list[str]) -> list[str]:
    options: list[str] = []
    for project in sorted(projects):
        options += ["--package", project]
    return options


def reservoir_ready() -> str | None:
    """None when `reservoir sync` exists, else why not."""
    if not RESERVOIR.exists():
        return f"{RESERVOIR} is missing"
    probe = subprocess.run([str(RESERVOIR), "sync", "--help"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return "`reservoir sync` is not available yet"
    return None


# ---------------------------------------------------------------- scenarios


@dataclass
class Measurement:
    scenario: str
    tool: str
    outcomes: list[Outcome] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float | None:
        good = [o.seconds for o in self.outcomes if o.ok]
        return statistics.median(good) if good and len(good) == len(self.outcomes) else None

    @property
    def timed_out(self) -> bool:
        return any(o.timed_out for o in self.outcomes)


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def files_of(index: UpstreamIndex, releases: list[tuple[str, str]] | None) -> int:
    """How many upstream files belong to `releases` (None: every release)."""
    if releases is None:
        return index.file_count
    wanted = set(releases)
    return sum(1 for files in index.files.values() for f in files if (f.project, f.version) in wanted)


def expect_complete(mirror: Mirror, target: Path, index: UpstreamIndex, pins: list[tuple[str, str]] | None,
                    outcome: Outcome) -> None:
    """A sync that did not store every file of its selection does not count as a success."""
    if not outcome.ok:
        return
    selection = mirror.selected_releases(target) if mirror.selected_releases else pins
    expected, stored = files_of(index, selection), mirror.stored_files(target)
    if stored < expected or expected == 0:
        outcome.ok = False
        outcome.note = f"stored {stored} of {expected} files"


def initial_run(mirror: Mirror, upstream: RunningUpstream, index: UpstreamIndex, projects: list[str],
                pins: list[tuple[str, str]] | None, work: Path, run: int, timeout: float) -> tuple[Outcome, Path]:
    """One sync into an empty target; the target stays for the re-syncs."""
    target = fresh_dir(work / f"{mirror.name}-initial")
    mirror.prepare(target, upstream, projects)
    outcome = timed(mirror.command(target), upstream, work / "logs" / f"{mirror.name}-initial-{run}.log", timeout)
    expect_complete(mirror, target, index, pins, outcome)
    return outcome, target


def resync_run(mirror: Mirror, upstream: RunningUpstream, target: Path, scenario: str, run: int, timeout: float,
               work: Path, recheck: bool) -> Outcome:
    command = mirror.recheck_command if recheck and mirror.recheck_command else mirror.command
    slug = scenario.replace(" ", "-").replace(",", "").replace("(*)", "recheck")
    outcome = timed(command(target), upstream, work / "logs" / f"{mirror.name}-{slug}-{run}.log", timeout)
    if outcome.ok and outcome.files:
        outcome.note = f"re-fetched {outcome.files} files"
    return outcome


def still_going(m: Measurement) -> bool:
    """A tool that failed or timed out once is not run again in that scenario."""
    return all(o.ok for o in m.outcomes)


def describe(outcome: Outcome) -> str:
    state = "ok" if outcome.ok else ("TIMED OUT" if outcome.timed_out else "FAILED")
    text = (f"{outcome.seconds:.2f} s, {outcome.files} files / {outcome.file_bytes / 1e6:.1f} MB fetched, "
            f"{outcome.requests} requests, {state}")
    return text + (f" ({outcome.note})" if outcome.note else "")


# ---------------------------------------------------------------- report


def seconds_text(m: Measurement, timeout: float) -> str:
    if m.timed_out:
        return f"> {timeout:.0f} s"
    if m.median is None:
        return "failed" if m.outcomes else "not run"
    return f"{m.median:.2f} s"


def fetched_text(m: Measurement) -> str:
    if not m.outcomes:
        return "-"
    last = m.outcomes[-1]
    return f"{last.files} files, {last.file_bytes / 1e6:.1f} MB, {last.requests} req"


def ratio_text(ours: Measurement, peer: Measurement, timeout: float) -> str:
    if ours.median is None:
        return "-"
    if peer.timed_out:
        return f"> {timeout / ours.median:.1f}x"
    if peer.median is None:
        return "-"
    return f"{peer.median / ours.median:.2f}x"


def print_table(rows: list[tuple[Measurement, Measurement]], timeout: float) -> None:
    header = ("scenario", "reservoir", "bandersnatch", "speed-up", "reservoir fetched", "bandersnatch fetched")
    lines = [header] + [
        (peer.scenario, seconds_text(ours, timeout), seconds_text(peer, timeout), ratio_text(ours, peer, timeout),
         fetched_text(ours), fetched_text(peer))
        for ours, peer in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print()
    for n, line in enumerate(lines):
        print(" | ".join(cell.ljust(w) for cell, w in zip(line, widths)))
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    print("\nspeed-up = bandersnatch median / reservoir median (higher is better for reservoir)")
    print("(*) reservoir's normal no-change re-sync vs `bandersnatch mirror --force-check`, which ignores its saved\n"
          "    serial, fetches every project's JSON and re-hashes every stored file")


def spread_text(m: Measurement, timeout: float) -> str:
    """The median with the range of the runs, for the record in BENCHMARKS.md."""
    text = seconds_text(m, timeout)
    runs = [o.seconds for o in m.outcomes if o.ok]
    return f"{text} ({min(runs):.2f}-{max(runs):.2f})" if m.median is not None and len(runs) > 1 else text


def markdown_table(rows: list[tuple[Measurement, Measurement]], timeout: float) -> str:
    lines = ["| scenario | reservoir, median (range) | bandersnatch, median (range) | speed-up | "
             "reservoir fetched | bandersnatch fetched |", "|---|---|---|---|---|---|"]
    lines += [f"| {peer.scenario} | {spread_text(ours, timeout)} | {spread_text(peer, timeout)} | "
              f"{ratio_text(ours, peer, timeout)} | {fetched_text(ours)} | {fetched_text(peer)} |"
              for ours, peer in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


Row = tuple[Measurement, Measurement]


def measure_upstream(index: UpstreamIndex, reservoir_projects: list[str], mirrors: list[Mirror], label: str,
                     initial_runs: int, args: argparse.Namespace, work: Path) -> list[Row]:
    """Initial sync, no-change re-sync and forced re-check of one upstream, for every mirror.

    The tools take turns run by run, so a load change on a shared machine
    falls on both rather than on whichever happened to run then.
    """
    suffix = f", {label}" if label else ""
    scenarios = (f"initial sync{suffix}", f"no-change re-sync{suffix}", f"full re-check{suffix} (*)")
    found = {m.name: [Measurement(s, m.name) for s in scenarios] for m in mirrors}
    targets: dict[str, Path] = {}
    # Reservoir (first) gets the roots and selects the closure; bandersnatch then
    # gets exactly the releases reservoir selected, pinned, so both fetch the same
    # files. Without reservoir it gets every project on the upstream.
    pins: list[tuple[str, str]] | None = None
    with serve_upstream(index, args.latency_ms / 1000) as upstream:
        for run in range(initial_runs):
            for mirror in mirrors:
                initial = found[mirror.name][0]
                if not still_going(initial):
                    continue
                if mirror.selected_releases is not None:
                    projects = reservoir_projects
                else:
                    projects = [f"{n}=={v}" for n, v in pins] if pins is not None else sorted(index.files)
                outcome, targets[mirror.name] = initial_run(mirror, upstream, index, projects, pins, work, run,
                                                            args.timeout)
                initial.outcomes.append(outcome)
                print(f"  {mirror.name:12} {initial.scenario} run {run + 1}: {describe(outcome)}", flush=True)
                if mirror.selected_releases is not None and outcome.ok and pins is None:
                    pins = mirror.selected_releases(targets[mirror.name])
        for position, recheck in ((1, False), (2, True)):
            for run in range(args.runs):
                for mirror in mirrors:
                    measurement = found[mirror.name][position]
                    if not still_going(found[mirror.name][0]) or not still_going(measurement):
                        continue
                    if recheck and mirror.recheck_command is None:
                        continue  # its normal re-sync already checks every project
                    outcome = resync_run(mirror, upstream, targets[mirror.name], measurement.scenario, run,
                                         args.timeout, work, recheck)
                    measurement.outcomes.append(outcome)
                    print(f"  {mirror.name:12} {measurement.scenario} run {run + 1}: {describe(outcome)}", flush=True)
    for measurements in found.values():
        if not measurements[2].outcomes:
            measurements[2].outcomes = measurements[1].outcomes
    ours = found.get("reservoir", [Measurement(s, "reservoir") for s in scenarios])
    return list(zip(ours, found["bandersnatch"]))


def run_scenarios(args: argparse.Namespace) -> None:
    # A folder of its own, so two runs at once (several engineers, one tree) never share mirrors.
    BENCH.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sync_pypi-", dir=BENCH))
    try:
        measure_all(args, work)
    finally:
        keep_logs_only(work)


def keep_logs_only(work: Path) -> None:
    """Drop the mirrors (hundreds of MB); keep the logs of every run for inspection."""
    for child in work.iterdir():
        if child.name != "logs":
            shutil.rmtree(child, ignore_errors=True)
    print(f"logs: {work / 'logs'}", flush=True)


def measure_all(args: argparse.Namespace, work: Path) -> None:
    bandersnatch_exe = ensure_bandersnatch()
    mirrors = [bandersnatch_mirror(bandersnatch_exe, args.workers)]
    why_not = reservoir_ready()
    if why_not:
        print(f"note: reservoir side skipped: {why_not}", flush=True)
    else:
        mirrors.insert(0, reservoir_mirror(args.with_vetting))

    real = scan_folder(ensure_real_files(args.roots))
    print(f"real upstream: {len(real.files)} projects, {real.file_count} files, {real.total_bytes / 1e6:.1f} MB "
          f"(closure of {len(args.roots)} root projects)", flush=True)
    print(f"{bandersnatch_version(bandersnatch_exe)}, workers={args.workers}; upstream latency "
          f"{args.latency_ms:g} ms per request; reservoir vetting "
          f"{'included' if args.with_vetting else 'off (mirroring only)'}", flush=True)
    rows = measure_upstream(real, sorted(args.roots), mirrors, "", args.runs, args, work)
    if args.synthetic:
        synthetic = scan_folder(ensure_synthetic_files(args.synthetic))
        print(f"synthetic upstream: {len(synthetic.files)} projects, {synthetic.file_count} files", flush=True)
        rows += measure_upstream(synthetic, sorted(synthetic.files), mirrors, f"{len(synthetic.files)} projects", 1,
                                 args, work)

    print_table(rows, args.timeout)
    if args.markdown:
        Path(args.markdown).write_text(markdown_table(rows, args.timeout))
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"scenario": o.scenario, "reservoir_s": o.median, "bandersnatch_s": p.median,
              "bandersnatch_timed_out": p.timed_out,
              "reservoir_runs": [vars(x) for x in o.outcomes], "bandersnatch_runs": [vars(x) for x in p.outcomes]}
             for o, p in rows], indent=2))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--synthetic", type=int, default=1000, help="projects in the synthetic upstream (0: skip)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before one CLI run is abandoned")
    parser.add_argument("--workers", type=int, default=10,
                        help="bandersnatch download workers (10 is its maximum, its fastest setting)")
    parser.add_argument("--roots", nargs="+", default=list(ROOT_PROJECTS), help="root projects of the closure")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay every upstream response by this much, to stand in for a remote index")
    parser.add_argument("--with-vetting", action="store_true",
                        help="time `reservoir sync` as shipped, license/security vetting of new releases included "
                             "(default: mirroring alone, as bandersnatch does)")
    parser.add_argument("--markdown", help="also write the table, with each median's range, as markdown here")
    parser.add_argument("--json", help="also write the raw measurements to this file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run_scenarios(parse_args())
