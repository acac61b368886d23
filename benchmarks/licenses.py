"""License vetting vs a full `scancode` CLI run on the same real packages.

    .venv/bin/python benchmarks/licenses.py --packages DIR [--count 100] [--max-mb 8]

DIR is any folder of real wheels (e.g. the host's local wheel mirror, or a
`pip download` folder); one wheel per project is taken, sorted by name, up
to --count, none larger than --max-mb. Three timed runs, all in this process:

1. reservoir cold: a fresh hub home, every wheel put in the catalog as a
   stored artifact, `licenses.vetter.vet` (starts the scancode worker, loads
   its index, scans the license-bearing files, fills the sha256 cache);
2. scancode CLI: `scancode --license --json OUT -n 2` on the same wheels
   unpacked (what one runs without Reservoir);
3. reservoir warm: `vet` again on the same store (every file in the cache).

Agreement: a package agrees when the set of license ids of our concluded
expression equals the set scancode's CLI detected in that package's
license-bearing files (LICENSE*, COPYING*, NOTICE*, METADATA), scancode's
vague "unknown-license-reference" ids left out on both sides.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from packaging.utils import canonicalize_name, parse_wheel_filename  # noqa: E402
from sqlalchemy import select  # noqa: E402

from licenses.categories import license_ids  # noqa: E402
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


def scancode_cli(wheels: list[Path], work: Path) -> tuple[float, dict[str, set[str]]]:
    tree = work / "unpacked"
    owners: dict[str, str] = {}
    for wheel in wheels:
        name = str(canonicalize_name(parse_wheel_filename(wheel.name)[0]))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(tree / name)
        owners[name] = name
    out = work / "scancode.json"
    scancode = Path(sys.executable).parent / "scancode"
    start = time.perf_counter()
    subprocess.run([str(scancode), "--license", "--json", str(out), "-n", "2", "--quiet", str(tree)], check=True)
    elapsed = time.perf_counter() - start
    found: dict[str, set[str]] = {name: set() for name in owners}
    for entry in json.loads(out.read_text())["files"]:
        parts = Path(entry["path"]).parts
        if entry.get("type") != "file" or len(parts) < 3:
            continue
        member = "/".join(parts[2:])
        if is_license_bearing(member):
            found[parts[1]] |= ids_of(entry.get("detected_license_expression_spdx"))
    return elapsed, found


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
    args = parser.parse_args()
    wheels = pick_wheels(args.packages, args.count, int(args.max_mb * 1024 * 1024))
    BENCH.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BENCH) as tmp:
        work = Path(tmp)
        app, ids = make_store(work / "hub", wheels)
        cold = timed_vet(app, ids)
        ours = concluded_by_us(app)
        warm = statistics.median(timed_vet(app, ids) for _ in range(args.warm_runs))
        peer, theirs = scancode_cli(wheels, work)
        app.close()
        agree = [name for name in ours if ours[name] == theirs.get(name, set())]
        disagree = sorted(set(ours) - set(agree))
        shutil.rmtree(work / "unpacked", ignore_errors=True)
    print(f"packages: {len(wheels)} wheels from {args.packages}")
    print(f"scancode CLI (--license -n 2):       {peer:8.2f} s")
    print(f"reservoir vet, cold cache:           {cold:8.2f} s   {peer / cold:6.1f}x faster")
    print(f"reservoir vet, warm cache (median):  {warm:8.2f} s   {peer / warm:6.1f}x faster")
    print(f"agreement on concluded license ids:  {len(agree)}/{len(ours)} = {100 * len(agree) / len(ours):.1f}%")
    for name in disagree:
        print(f"  differs: {name}: ours {sorted(ours[name])} scancode {sorted(theirs.get(name, set()))}")


if __name__ == "__main__":
    main()
