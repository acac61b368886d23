"""APT index pipeline: our parse + diff + closure against python-debian's deb822 parse alone (issue 12).

The index is the real `main` Packages file of the host's apt sources (the
first `deb` source listing `main`, its first suite unless `--suite`), fetched
once into ~/.cache/reservoir-bench/apt/ the way the adapter fetches it:
InRelease verified with gpgv against the source's Signed-By keyring, the
`Packages.xz` by hash, checked against the Release. Reruns reuse the cache
while the upstream lists the same index; offline, the cached copy is used.

Each measurement is its own process, reading the decompressed index from
disk; python-debian and our pipeline take turns, `--runs` times (median):

- baseline: `deb822.Packages.iter_paragraphs(file, use_apt_pkg=False)`, every
  paragraph read, nothing else;
- ours: `parse_packages`, then the diff against a previous snapshot of the
  same index (10 packages gone, 10 new, 10 with another file: prepared
  beforehand, untimed) and the closure of `--packages` with the Essential
  set, as a channel over that suite would resolve it.

Peak RSS is each process's own (`os.wait4`), interpreter included.

    .venv/bin/python benchmarks/apt.py                    # --runs 3
    .venv/bin/python benchmarks/apt.py --suite bookworm --packages hello python3-yaml
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CACHE = Path(os.environ.get("RESERVOIR_BENCH_CACHE", Path.home() / ".cache" / "reservoir-bench")) / "apt"
DEFAULT_PACKAGES = ("hello", "python3-yaml", "build-essential", "python3-numpy", "git")


def host_arch() -> str:
    try:
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "amd64"


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - the host's own apt source
        return response.read()


def real_index(suite: str | None, component: str, arch: str) -> tuple[Path, str]:
    """The decompressed index in the cache, and where it came from."""
    from downloader.apt.release import choose_index, open_index, parse_release, prepare_keyrings, verify_inrelease
    from downloader.apt.sources import read_sources, resolve_suites, trusted_keyrings

    sources = [s for s in read_sources() if "deb" in s.types and component in s.components and s.suites]
    if not sources:
        raise SystemExit(f"no apt source of this host carries component {component!r}")
    suite = suite or sources[0].suites[0]
    [source] = resolve_suites([suite], sources, trusted=trusted_keyrings())
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / f"{suite}_{component}_binary-{arch}_Packages"
    dist = f"{source.uri}dists/{suite}/"
    try:
        inrelease = fetch(dist + "InRelease")
    except (urllib.error.URLError, OSError) as exc:
        if target.is_file():
            print(f"upstream unreachable ({exc}); using the cached {target}", file=sys.stderr)
            return target, f"{dist} (cached)"
        raise SystemExit(f"cannot fetch {dist}InRelease: {exc}") from None
    with tempfile.TemporaryDirectory() as tmp:
        keyrings = prepare_keyrings(source.keyrings, Path(tmp))
        release = parse_release(verify_inrelease(inrelease, keyrings, Path(tmp), f"{suite}: InRelease").text)
    choice = choose_index(release, component, arch)
    stamp = target.with_suffix(".sha256")
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == choice.entry.sha256:
        return target, dist + choice.entry.path
    print(f"fetching {dist}{choice.fetch_path} ({choice.entry.size} bytes)", file=sys.stderr)
    text = open_index(fetch(dist + choice.fetch_path), choice, f"{suite}/{component}/binary-{arch}/Packages")
    target.write_bytes(text)
    stamp.write_text(choice.entry.sha256 + "\n")
    return target, dist + choice.entry.path


def previous_snapshot(index: Path, out: Path) -> None:
    """A snapshot the index differs from by 10 removed, 10 added and 10 changed packages."""
    from downloader.apt.diff import reflist
    from downloader.apt.packages import parse_packages

    current = sorted(reflist(parse_packages(index.read_bytes())).items())
    previous = dict(current[30:])
    previous.update({(f"gone-{i}", "1.0", "amd64"): "0" * 64 for i in range(10)})  # removed since
    for key, _ in current[10:20]:
        previous[key] = "f" * 64  # another file since
    previous.update(dict(current[20:30]))
    out.write_text(json.dumps([[list(k), v] for k, v in previous.items()]))


# ------------------------------------------------------------------ the measured children


def child_baseline(index: Path) -> dict[str, object]:
    from debian import deb822

    started, cpu = time.perf_counter(), time.process_time()
    count = 0
    with index.open("rb") as stream:
        for _paragraph in deb822.Packages.iter_paragraphs(stream, use_apt_pkg=False):
            count += 1
    return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu, "packages": count}


def child_ours(index: Path, previous_file: Path, suite: str, arch: str, packages: list[str]) -> dict[str, object]:
    from downloader.apt.closure import ClosureOptions, Universe, resolve
    from downloader.apt.diff import diff, reflist
    from downloader.apt.packages import parse_packages

    previous = {tuple(k): v for k, v in json.loads(previous_file.read_text())}
    started, cpu = time.perf_counter(), time.process_time()
    records = parse_packages(index.read_bytes(), "Packages", suite, "main")
    parsed = time.perf_counter()
    delta = diff(previous, reflist(records))  # type: ignore[arg-type]
    diffed = time.perf_counter()
    universe = Universe.build([records], arch, f"{suite} main")
    result = resolve(universe, ClosureOptions(tuple(packages)))
    done = time.perf_counter()
    return {"seconds": done - started, "cpu": time.process_time() - cpu, "parse": parsed - started, "diff": diffed - parsed, "closure": done - diffed,
            "packages": len(records), "chosen": len(result.chosen), "warnings": len(result.warnings),
            "delta": [len(delta.added), len(delta.removed), len(delta.changed)]}


def run_child(args: list[str]) -> tuple[dict[str, object], float]:
    process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, cwd=REPO)
    assert process.stdout is not None
    out = process.stdout.read()
    _pid, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"benchmark child {args[:2]} failed")
    return json.loads(out), usage.ru_maxrss / 1024  # KiB -> MiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite")
    parser.add_argument("--component", default="main")
    parser.add_argument("--arch", default=host_arch())
    parser.add_argument("--packages", nargs="+", default=list(DEFAULT_PACKAGES))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, index = args.child[0], Path(args.child[1])
        result = child_baseline(index) if kind == "baseline" else child_ours(
            index, Path(args.child[2]), args.child[3], args.arch, args.child[4:])
        print(json.dumps(result))
        return

    index, origin = real_index(args.suite, args.component, args.arch)
    suite = args.suite or index.name.split("_", 1)[0]
    previous = CACHE / f"{index.name}.previous.json"
    previous_snapshot(index, previous)
    print(f"index: {origin} ({index.stat().st_size / 1e6:.1f} MB decompressed), arch {args.arch}")
    print(f"closure of: {' '.join(args.packages)} (+ Essential)")
    baseline: list[float] = []
    baseline_cpu: list[float] = []
    ours: list[dict[str, object]] = []
    rss_baseline: list[float] = []
    rss_ours: list[float] = []
    for run in range(args.runs):
        b, b_rss = run_child(["--child", "baseline", str(index)])
        o, o_rss = run_child(["--child", "ours", str(index), str(previous), suite, *args.packages])
        baseline.append(float(b["seconds"]))  # type: ignore[arg-type]
        baseline_cpu.append(float(b["cpu"]))  # type: ignore[arg-type]
        ours.append(o)
        rss_baseline.append(b_rss)
        rss_ours.append(o_rss)
        print(f"run {run + 1}: python-debian parse {b['seconds']:.2f} s (cpu {b['cpu']:.2f}; {b['packages']} paragraphs, "
              f"{b_rss:.0f} MiB); ours {o['seconds']:.2f} s (cpu {o['cpu']:.2f}) = parse {o['parse']:.2f} + diff {o['diff']:.2f} "
              f"+ closure {o['closure']:.2f} ({o['packages']} packages, {o['chosen']} chosen, "
              f"{o['warnings']} warnings, delta +{o['delta'][0]} -{o['delta'][1]} ~{o['delta'][2]}; "  # type: ignore[index]
              f"{o_rss:.0f} MiB)")
    b_med = statistics.median(baseline)
    o_med = statistics.median(float(o["seconds"]) for o in ours)  # type: ignore[arg-type]
    b_cpu = statistics.median(baseline_cpu)
    o_cpu = statistics.median(float(o["cpu"]) for o in ours)  # type: ignore[arg-type]
    print(f"median: python-debian parse alone {b_med:.2f} s, our parse + diff + closure {o_med:.2f} s: "
          f"{b_med / o_med:.1f}x faster (goal: 4x); peak RSS ours {max(rss_ours):.0f} MiB (goal: < 1024), "
          f"python-debian {max(rss_baseline):.0f} MiB")
    print(f"median CPU seconds (less sensitive to other load on the machine): python-debian {b_cpu:.2f}, "
          f"ours {o_cpu:.2f}: {b_cpu / o_cpu:.1f}x")
    print(f"measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
