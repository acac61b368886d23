"""Scale benchmark: what each step costs as the site grows (issue 11).

For each size N it builds a `file://` PEP 691 upstream of N tiny synthetic
wheels (with `_last-serial` in the root and the pages, as PyPI has), then
times, each as its own `reservoir` process:

1. initial sync of a hub channel requesting all N projects;
2. full export, and 3. the site's import of that bundle;
4. a sync after 10 new projects appear upstream (and in the channel),
5. the incremental export of those 10, and 6. the site's import of it;
7. a no-change sync.

It prints each step's seconds and peak RSS (the step's own process, from
`os.wait4`) per size, and each step's growth factor between consecutive
sizes. The syncs run without the vetters (license scans; see
`_reservoir_mirror_only.py`), as `sync_pypi.py` does.

    .venv/bin/python benchmarks/scale.py                 # N = 500, 5000, 20000
    .venv/bin/python benchmarks/scale.py --sizes 500 5000
    .venv/bin/python benchmarks/scale.py --with-100k     # adds N = 100000 (long)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _upstream import UpstreamIndex, render_index, scan_folder  # noqa: E402
from sync_pypi import BENCH, MIRROR_ONLY, REPO, RESERVOIR, RESERVOIR_PYTHON, tiny_wheel  # noqa: E402

WORK = BENCH / "scale"
NEW_PROJECTS = 10
STEPS = ("initial sync", "full export", "full import", "sync +10", "export +10", "import +10", "no-change sync")
TIMEOUT_S = 6 * 3600


def project_names(count: int) -> list[str]:
    # Zero-padded so that later projects sort (and get serials) after earlier ones.
    return [f"scale-project-{i:06d}" for i in range(count)]


def new_names() -> list[str]:
    return [f"scale-zz-new-{i:02d}" for i in range(NEW_PROJECTS)]


def wheel_pool(names: list[str]) -> Path:
    """Every wheel any size needs, generated once and reused: BENCH/scale/wheels."""
    pool = WORK / "wheels"
    pool.mkdir(parents=True, exist_ok=True)
    for name in names:
        filename, data = tiny_wheel(name, "1.0.0")
        path = pool / filename
        if not path.exists():
            path.write_bytes(data)
    return pool


def wheel_path(pool: Path, name: str) -> Path:
    return pool / f"{name.replace('-', '_')}-1.0.0-py3-none-any.whl"


def write_tree(root: Path, files: Path) -> UpstreamIndex:
    """A static PEP 691 tree over the wheels in `files`: simple/index.json, simple/<p>/index.json, packages/."""
    index = scan_folder(files)
    origin = root.as_uri()
    rendered = render_index(index, origin)
    simple = root / "simple"
    simple.mkdir(parents=True, exist_ok=True)
    (simple / "index.json").write_bytes(rendered.root_json)
    for project, page in rendered.projects.items():
        folder = simple / project
        target = folder / "index.json"
        if target.is_file() and target.read_bytes() == page.simple_json:
            continue
        folder.mkdir(exist_ok=True)
        target.write_bytes(page.simple_json)
    for url_path, upstream_file in rendered.by_url_path.items():
        target = root / url_path.lstrip("/")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(upstream_file.path, target)
    for url_path, raw in rendered.metadata_by_url_path.items():
        target = root / url_path.lstrip("/")
        if not target.exists():
            target.write_bytes(raw)
    return index


@dataclass
class Step:
    seconds: float
    peak_rss_mib: float


@dataclass
class SizeRun:
    size: int
    steps: dict[str, Step] = field(default_factory=dict)


def run_step(cmd: list[str], log: Path) -> Step:
    """Run one step as its own process; its wall time and its own peak RSS (not its parent's)."""
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        started = time.perf_counter()
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _pid, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"error: {' '.join(cmd[:6])} ... failed ({process.returncode}); see {log}")
    return Step(seconds, usage.ru_maxrss / 1024)  # ru_maxrss is in KiB on Linux


def quiet(cmd: list[str], log: Path) -> None:
    with open(log, "ab") as out:
        if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
            sys.exit(f"error: {' '.join(cmd[:6])} ... failed; see {log}")


def reservoir(home: Path, *args: str) -> list[str]:
    return [str(RESERVOIR), "--home", str(home), *args]


def sync_cmd(home: Path) -> list[str]:
    return [str(RESERVOIR_PYTHON), str(MIRROR_ONLY), "--home", str(home), "sync"]


def newest_bundle(media: Path) -> Path:
    return max((p for p in media.iterdir() if p.name.startswith("reservoir-")), key=lambda p: p.stat().st_mtime)


def add_to_channel(home: Path, names: list[str]) -> None:
    """Request more projects, as an edit of the channel would (no command edits one yet)."""
    sys.path.insert(0, str(REPO))
    from reservoir.db import open_database
    from reservoir.models import Channel

    db = open_database(f"sqlite:///{home / 'reservoir.db'}")
    try:
        with db.transaction() as session:
            channel = session.query(Channel).one()
            channel.options = {**channel.options, "packages": [*channel.options["packages"], *names]}
    finally:
        db.dispose()


def run_size(size: int, pool: Path) -> SizeRun:
    base = WORK / f"n{size}"
    shutil.rmtree(base, ignore_errors=True)
    upstream, files, hub, site, media = (base / d for d in ("upstream", "files", "hub", "site", "media"))
    files.mkdir(parents=True)
    log = base / "steps.log"
    names = project_names(size)
    for name in names:
        os.link(wheel_path(pool, name), files / wheel_path(pool, name).name)
    write_tree(upstream, files)
    requirements = base / "requirements.txt"
    requirements.write_text("\n".join(names) + "\n")
    quiet(reservoir(hub, "init", "--role", "hub"), log)
    quiet(reservoir(hub, "channel", "add", "scale", "--kind", "pypi", "--upstream", (upstream / "simple").as_uri() + "/",
                    "--requirements", str(requirements), "--python", "3.11", "--platform", "manylinux_2_28_x86_64"),
          log)
    quiet(reservoir(site, "init", "--role", "site"), log)
    quiet(reservoir(hub, "key", "export", "--out", str(base / "hub.pub")), log)
    quiet(reservoir(site, "trust", "add", str(base / "hub.pub")), log)
    media.mkdir()

    result = SizeRun(size)
    print(f"N={size}: ", end="", flush=True)

    def step(name: str, cmd: list[str]) -> None:
        subprocess.run(["sync"], check=False)  # earlier steps' writes on disk before the clock starts
        result.steps[name] = run_step(cmd, log)
        print(f"{name} {result.steps[name].seconds:.1f}s; ", end="", flush=True)

    step("initial sync", sync_cmd(hub))
    step("full export", reservoir(hub, "export", "--out", str(media)))
    step("full import", reservoir(site, "import", str(newest_bundle(media))))
    for name in new_names():
        os.link(wheel_path(pool, name), files / wheel_path(pool, name).name)
    write_tree(upstream, files)
    add_to_channel(hub, new_names())
    step("sync +10", sync_cmd(hub))
    step("export +10", reservoir(hub, "export", "--out", str(media)))
    step("import +10", reservoir(site, "import", str(newest_bundle(media))))
    step("no-change sync", sync_cmd(hub))
    print(flush=True)
    return result


def print_table(runs: list[SizeRun]) -> str:
    header = ["step", *(f"N={r.size:,}" for r in runs), *(f"x {a.size:,}->{b.size:,}" for a, b in zip(runs, runs[1:]))]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in STEPS:
        cells = [name]
        cells += [f"{r.steps[name].seconds:.2f} s, {r.steps[name].peak_rss_mib:.0f} MiB" for r in runs]
        cells += [f"{b.steps[name].seconds / a.steps[name].seconds:.2f}x" for a, b in zip(runs, runs[1:])]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000, 20000])
    parser.add_argument("--with-100k", action="store_true", help="also N = 100000 (about an hour here)")
    args = parser.parse_args()
    sizes = sorted(set(args.sizes + ([100_000] if args.with_100k else [])))
    pool = wheel_pool(project_names(max(sizes)) + new_names())
    runs = [run_size(size, pool) for size in sizes]
    table = print_table(runs)
    (WORK / "results.json").write_text(json.dumps(
        {"sizes": sizes, "table": table,
         "steps": {r.size: {n: vars(s) for n, s in r.steps.items()} for r in runs}}, indent=1))


if __name__ == "__main__":
    main()
