"""License vetting vs a full `scancode` CLI run on the same real packages.

    .venv/bin/python benchmarks/licenses.py --packages DIR [--count 100] [--max-mb 8] [--json FILE]

DIR is any folder of real wheels (e.g. the host's local wheel mirror, or a
`pip download` folder); wheels are taken in file-name order, the first one of
each project that is at most --max-mb, up to --count projects. Three timed
runs, all in this process:

1. reservoir cold: a fresh hub home, every wheel put in the catalog as a
   stored artifact, `licenses.vetter.vet` (starts the scancode worker, loads
   its index, scans the license-bearing files, fills the sha256 cache);
2. scancode CLI: `scancode --license --json OUT -n 2` on the same wheels
   unpacked (what one runs without Reservoir);
3. reservoir warm: `vet` again on the same store (every file in the cache).

Agreement: a package agrees when the set of license ids of our concluded
expression equals the set scancode's CLI detected in that package's
license-bearing files (LICENSE*, COPYING*, NOTICE*, COPYRIGHT*, and the
header fields of the top-level METADATA: License, License-Expression,
Classifier), scancode's vague ids (`licenses.verdict.VAGUE_IDS`:
unknown-license-reference and the like) left out on both sides. METADATA's
body is the project's README, whose license mentions are mostly about other
software; the strict figure, whole METADATA read, is printed too. Each package that differs is printed with where
each side's ids came from (our declaration and scanned files; the CLI's ids per
file); --json FILE writes that for every package.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from packaging.utils import canonicalize_name, parse_wheel_filename  # noqa: E402
from sqlalchemy import select  # noqa: E402

from licenses.declared import license_ids  # noqa: E402
from licenses.files import is_license_bearing  # noqa: E402
from licenses.verdict import VAGUE_IDS  # noqa: E402
from licenses.vetter import vet  # noqa: E402
from reservoir.context import AppContext  # noqa: E402
from reservoir.home import create_home  # noqa: E402
from reservoir.models import Artifact, ArtifactState, Channel, Release  # noqa: E402

BENCH = ROOT / ".bench" / "licenses"


def pick_wheels(folder: Path, count: int, max_bytes: int) -> list[Path]:
    chosen: dict[str, Path] = {}
    for path in sorted(folder.glob("*.whl")):
        try:
            name = canonicalize_name(parse_wheel_filename(path.name)[0])
        except ValueError:
            continue
        if name not in chosen and path.stat().st_size <= max_bytes:
            chosen[name] = path
    return list(chosen.values())[:count]


def metadata_fields(wheel: Path) -> dict[str, object]:
    from email.parser import HeaderParser

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        headers = HeaderParser().parsestr(archive.read(name).decode("utf-8", "replace"), headersonly=True)
    return {"license_expression": headers.get("License-Expression"), "license": headers.get("License"),
            "classifiers": headers.get_all("Classifier") or []}


def make_store(home: Path, wheels: list[Path]) -> tuple[AppContext, list[int]]:
    create_home(home, "hub")
    app = AppContext(home_root=home)
    with app.db.transaction() as session:
        channel = Channel(name="bench", kind="pypi", upstream="http://127.0.0.1:1/simple", options={})
        session.add(channel)
        for wheel in wheels:
            name, version, _, _ = parse_wheel_filename(wheel.name)
            release = Release(channel=channel, name=str(name), display_name=str(name), version=str(version),
                              meta=metadata_fields(wheel))
            sha = app.blobs.put_file(wheel)
            release.artifacts.append(Artifact(filename=wheel.name, sha256=sha, size=wheel.stat().st_size,
                                              state=ArtifactState.STORED, meta={}))
            session.add(release)
        session.flush()
        ids = list(session.scalars(select(Release.id)))
    return app, ids


def concluded_by_us(app: AppContext) -> dict[str, set[str]]:
    with app.db.transaction() as session:
        return {r.name: ids_of(r.meta["vetting"]["concluded"]) for r in session.scalars(select(Release))}


def ids_of(expression: str | None) -> set[str]:
    return {i for i in license_ids(expression) if i not in VAGUE_IDS}


def our_details(app: AppContext) -> dict[str, dict[str, object]]:
    """Per package: our declared / detected / concluded expressions and each scanned file's ids."""
    out: dict[str, dict[str, object]] = {}
    with app.db.transaction() as session:
        for release in session.scalars(select(Release)):
            vetting = release.meta["vetting"]
            files: dict[str, set[str]] = {}
            for item in vetting["evidence"]:
                files.setdefault(item["file"], set()).update(ids_of(item["spdx"]))
                if item.get("note"):
                    files.setdefault(f"{item['file']} ({item['note']})", set())
            out[release.name] = {
                "declared_raw": vetting["declared_raw"], "declared": vetting["declared"],
                "detected": vetting["detected"], "concluded": vetting["concluded"],
                "files": {name: sorted(ids) for name, ids in files.items()},
            }
    return out


PerFile = dict[str, dict[str, set[str]]]


def scancode_cli(wheels: list[Path], work: Path) -> tuple[float, PerFile, PerFile, int, int]:
    """Time the CLI on the unpacked wheels; per package, the ids it found in each license-bearing file.

    Returned twice: with METADATA's header fields only, and with the whole METADATA (README body
    included); also how many files it scanned and how many it reported errors for (timeouts included)."""
    tree = work / "unpacked"
    names = []
    for wheel in wheels:
        name = str(canonicalize_name(parse_wheel_filename(wheel.name)[0]))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(tree / name)
        names.append(name)
    out = work / "scancode.json"
    scancode = Path(sys.executable).parent / "scancode"
    start = time.perf_counter()
    # Not check=True: scancode exits 1 when any file had a scan error (timeouts included) but still
    # writes its JSON; those files are counted and printed instead of losing the whole run.
    done = subprocess.run([str(scancode), "--license", "--json", str(out), "-n", "2", "--quiet", str(tree)],
                          check=False)
    elapsed = time.perf_counter() - start
    if not out.exists():
        raise SystemExit(f"scancode exited {done.returncode} without writing {out}")
    found: dict[str, dict[str, set[str]]] = {name: {} for name in names}
    whole: dict[str, dict[str, set[str]]] = {name: {} for name in names}
    scanned = errors = 0
    for entry in json.loads(out.read_text())["files"]:
        parts = Path(entry["path"]).parts
        if entry.get("type") != "file" or len(parts) < 3:
            continue
        scanned += 1
        member = "/".join(parts[2:])
        if entry.get("scan_errors"):
            errors += 1
            print(f"  scancode CLI error on {parts[1]}/{member}: {entry['scan_errors'][0][:200]}")
        if not is_license_bearing(member):
            continue
        whole[parts[1]][member] = ids_of(entry.get("detected_license_expression_spdx"))
        if PurePosixPath(member).name != "METADATA":
            found[parts[1]][member] = whole[parts[1]][member]
            continue
        # METADATA: only what the CLI matched in the header fields (License, License-Expression,
        # Classifier); the body is the project's README, which our vetter does not read as a declaration.
        header_lines = header_length(tree / parts[1] / member)
        found[parts[1]][member] = {
            i for detection in entry.get("license_detections") or [] for match in detection.get("matches") or []
            if (match.get("start_line") or 0) <= header_lines for i in ids_of(match.get("license_expression_spdx"))
        }
    return elapsed, found, whole, scanned, errors


def header_length(metadata: Path) -> int:
    """How many lines a METADATA file's RFC 822 header takes (up to the first empty line)."""
    lines = metadata.read_text(encoding="utf-8", errors="replace").splitlines()
    return next((n for n, line in enumerate(lines) if not line.strip()), len(lines))


def union(per_file: dict[str, set[str]]) -> set[str]:
    return set().union(*per_file.values()) if per_file else set()


def wheel_stats(wheels: list[Path]) -> tuple[float, float, int]:
    """Compressed MB, unpacked MB and member count of the selection."""
    unpacked = members = 0
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
        members += len(infos)
        unpacked += sum(i.file_size for i in infos)
    return sum(w.stat().st_size for w in wheels) / 1e6, unpacked / 1e6, members


def timed_vet(app: AppContext, ids: list[int]) -> float:
    start = time.perf_counter()
    vet(app, ids)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=Path, required=True, help="a folder of real wheels")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--max-mb", type=float, default=8.0)
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write every package's expressions and per-file ids here")
    args = parser.parse_args()
    wheels = pick_wheels(args.packages, args.count, int(args.max_mb * 1024 * 1024))
    if not wheels:
        raise SystemExit(f"no wheel of at most {args.max_mb} MB in {args.packages}")
    packed_mb, unpacked_mb, members = wheel_stats(wheels)
    print(f"packages: {len(wheels)} wheels from {args.packages} (one per project, by file name, "
          f"<= {args.max_mb} MB): {packed_mb:.1f} MB, {members} files, {unpacked_mb:.1f} MB unpacked", flush=True)
    BENCH.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BENCH) as tmp:
        work = Path(tmp)
        app, ids = make_store(work / "hub", wheels)
        cold = timed_vet(app, ids)
        ours = concluded_by_us(app)
        details = our_details(app)
        print(f"reservoir cold done in {cold:.2f} s", flush=True)
        warm_runs = [timed_vet(app, ids) for _ in range(args.warm_runs)]
        warm = statistics.median(warm_runs)
        app.close()
        print(f"reservoir warm done: {', '.join(f'{t:.3f}' for t in warm_runs)} s; running the scancode CLI",
              flush=True)
        peer, theirs, theirs_whole, scanned, errors = scancode_cli(wheels, work)
        shutil.rmtree(work / "unpacked", ignore_errors=True)
    agree = [name for name in ours if ours[name] == union(theirs.get(name, {}))]
    agree_whole = [name for name in ours if ours[name] == union(theirs_whole.get(name, {}))]
    disagree = sorted(set(ours) - set(agree))
    print(f"packages: {len(wheels)} wheels, {packed_mb:.1f} MB ({members} files, {unpacked_mb:.1f} MB unpacked)")
    print(f"scancode CLI (--license -n 2):       {peer:8.2f} s   ({scanned} files, {errors} with scan errors)")
    print(f"reservoir vet, cold cache:           {cold:8.2f} s   {peer / cold:6.1f}x faster")
    print(f"reservoir vet, warm cache (median):  {warm:8.3f} s   {peer / warm:6.1f}x faster")
    print(f"agreement on concluded license ids:  {len(agree)}/{len(ours)} = {100 * len(agree) / len(ours):.1f}%"
          "   (CLI ids from license files + METADATA header fields)")
    print(f"  strict, whole METADATA read:       {len(agree_whole)}/{len(ours)} = "
          f"{100 * len(agree_whole) / len(ours):.1f}%   (README body in METADATA included)")
    for name in disagree:
        mine, peer_files = details[name], theirs.get(name, {})
        print(f"  differs: {name}: ours {sorted(ours[name])} scancode {sorted(union(peer_files))}")
        print(f"    ours: declared {mine['declared_raw'][:120]!r} -> {mine['declared']}; detected {mine['detected']}; "
              f"files {mine['files']}")
        print(f"    scancode CLI files: { {m: sorted(i) for m, i in peer_files.items()} }")
    for name in sorted(set(agree) - set(agree_whole)):
        extra = union(theirs_whole[name]) - ours[name]
        print(f"  agrees on declarations, README body differs: {name}: ours {sorted(ours[name])}, "
              f"the CLI also matched {sorted(extra)} in the METADATA body")
    if args.json:
        args.json.write_text(json.dumps({
            name: {"agrees": name in agree, "agrees_whole_metadata": name in agree_whole, "ours": sorted(ours[name]),
                   "scancode": sorted(union(theirs.get(name, {}))),
                   "scancode_whole_metadata": sorted(union(theirs_whole.get(name, {}))), **details[name],
                   "scancode_files": {m: sorted(i) for m, i in theirs.get(name, {}).items()},
                   "scancode_files_whole_metadata": {m: sorted(i) for m, i in theirs_whole.get(name, {}).items()}}
            for name in sorted(ours)
        }, indent=1))

if __name__ == "__main__":
    main()
