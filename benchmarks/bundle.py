"""Bundle throughput: `reservoir export` + `reservoir import` against `tar cf` + `tar xf` of the same files.

    .venv/bin/python benchmarks/bundle.py [--mib 384] [--runs 3] [--real DIR]

Builds a hub under .bench/bundle/ holding a mix of package-sized random
files (half the bytes in 4 MiB files, half in 64 KiB ones: many small
files, the hard case), or with --real DIR real wheels taken from DIR in
name order up to --mib MiB; one release per file. Each run times, as whole
commands a user would type:

- reservoir: `export --full` on the hub, then `import` into a fresh site
  (verifying every part and blob, applying the catalog, publishing the
  index tree, fsyncing each blob);
- tar: `tar cf` of the same blob files, then `tar xf` into a fresh folder
  (no verification, no fsync), and the same followed by `sync`.

The site is set up (`reservoir init`, trusted key) before the clock starts,
and every timed step starts after `sync` and a short pause (see `settle`).

Prints medians and the throughput ratio reservoir / tar (goal: >= 0.8).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reservoir.context import AppContext  # noqa: E402
from reservoir.home import create_home  # noqa: E402
from reservoir.keys import add_trusted_key, create_signing_key, public_pem  # noqa: E402
from reservoir.models import Artifact, ArtifactState, Channel, Release  # noqa: E402

WORK = ROOT / ".bench" / "bundle"


def real_wheels(folder: Path, mib: int) -> list[Path]:
    chosen, total = [], 0
    for path in sorted(folder.glob("*.whl")):
        if total >= mib << 20:
            break
        chosen.append(path)
        total += path.stat().st_size
    return chosen


def build_hub(mib: int, real: Path | None) -> tuple[Path, list[Path], int]:
    """A hub with `mib` MiB of files: random ones (1/2 in 4 MiB files, 1/2 in 64 KiB files) or real wheels."""
    hub = WORK / "hub"
    marker = WORK / (f"hub-{mib}.ready" if real is None else f"hub-{mib}-{real.name}.ready")
    if marker.exists():
        app = AppContext(home_root=hub)
        files = sorted(app.blobs.root.glob("??/??/*"))
        return hub, files, sum(p.stat().st_size for p in files)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    home = create_home(hub, "hub")
    create_signing_key(home.keys_dir)
    app = AppContext(home_root=hub)
    sources: list[Path | int] = [*real_wheels(real, mib)] if real else [4 << 20] * (mib // 8) + [64 << 10] * (mib * 8)
    with app.db.transaction() as s:
        channel = Channel(name="bench", kind="pypi", upstream="file:///bench", options={})
        s.add(channel)
        for i, source in enumerate(sources):
            if isinstance(source, Path):
                sha, size = app.blobs.put_file(source), source.stat().st_size
            else:
                sha, size = app.blobs.put_bytes(os.urandom(source)), source
            release = Release(channel=channel, name=f"pkg{i}", display_name=f"pkg{i}", version="1.0", meta={})
            release.artifacts.append(
                Artifact(filename=f"pkg{i}-1.0-py3-none-any.whl", sha256=sha, size=size, state=ArtifactState.STORED,
                         meta={"packagetype": "bdist_wheel"})
            )
            s.add(release)
    app.close()
    marker.touch()
    files = sorted((hub / "blobs").glob("??/??/*"))
    return hub, files, sum(p.stat().st_size for p in files)


def settle(seconds: float) -> None:
    """Start each timed step from the same state: earlier writes on disk, freed memory given back.

    On this kind of VM (virtio-balloon with free page reporting) pages freed
    by deleting the previous run's files go back to the host within about
    2 s, and writing into fresh pages ran 5-12x slower than into pages
    freed a moment before (BENCHMARKS.md); without a pause, whichever tool
    ran right after a cleanup could be measured on the cheap pages.
    """
    subprocess.run(["sync"], check=True)
    time.sleep(seconds)


def timed(cmd: list[str], **kwargs: object) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - start


def reservoir_run(hub: Path, run: int, settle_s: float) -> tuple[float, float]:
    media = WORK / f"media-{run}"
    site = WORK / f"site-{run}"
    for d in (media, site):
        shutil.rmtree(d, ignore_errors=True)
    cli = [sys.executable, "-m", "reservoir"]
    # Set-up, untimed, as a site's admin does it once: `reservoir init` creates the database.
    subprocess.run([*cli, "--home", str(site), "init", "--role", "site"], check=True, stdout=subprocess.DEVNULL)
    add_trusted_key(site / "keys", public_pem(_hub_key(hub)), "hub.pub")
    # Each run exports a full bundle anew; the hub's export log only grows.
    settle(settle_s)
    export_s = timed([*cli, "--home", str(hub), "export", "--full", "--out", str(media)])
    bundle = next(media.glob("reservoir-*"))
    settle(settle_s)
    import_s = timed([*cli, "--home", str(site), "import", str(bundle)])
    shutil.rmtree(media)
    shutil.rmtree(site)
    return export_s, import_s


def _hub_key(hub: Path):  # type: ignore[no-untyped-def]
    from reservoir.keys import load_signing_key

    return load_signing_key(hub / "keys").public


def tar_run(hub: Path, run: int, then_sync: bool, settle_s: float) -> tuple[float, float]:
    archive = WORK / f"tar-{run}.tar"
    dest = WORK / f"untar-{run}"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    settle(settle_s)
    create_s = timed(["tar", "cf", str(archive), "-C", str(hub / "blobs"), "--exclude", ".tmp", "."])
    if then_sync:
        create_s += timed(["sync"])
    settle(settle_s)
    extract_s = timed(["tar", "xf", str(archive), "-C", str(dest)])
    if then_sync:
        extract_s += timed(["sync"])
    archive.unlink()
    shutil.rmtree(dest)
    return create_s, extract_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=384)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--real", type=Path, default=None, help="a folder of real wheels to use instead of random files")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to pause before each timed step (0: none)")
    args = parser.parse_args()
    settle_s = args.settle
    hub, files, total = build_hub(args.mib, args.real)
    print(f"payload: {len(files)} files, {total / 2**20:.0f} MiB; {args.runs} runs each, medians; "
          f"settle {settle_s:g} s", flush=True)
    results: dict[str, list[tuple[float, float]]] = {"reservoir": [], "tar": [], "tar+sync": []}
    for run in range(args.runs):
        results["reservoir"].append(reservoir_run(hub, run, settle_s))
        results["tar"].append(tar_run(hub, run, then_sync=False, settle_s=settle_s))
        results["tar+sync"].append(tar_run(hub, run, then_sync=True, settle_s=settle_s))
    medians = {}
    print(f"{'tool':<10} {'pack s':>8} {'unpack s':>9} {'total s':>8} {'MiB/s':>7}")
    for tool, runs in results.items():
        pack = statistics.median(r[0] for r in runs)
        unpack = statistics.median(r[1] for r in runs)
        whole = statistics.median(r[0] + r[1] for r in runs)
        medians[tool] = whole
        print(f"{tool:<10} {pack:8.2f} {unpack:9.2f} {whole:8.2f} {total / 2**20 / whole:7.0f}")
    print(f"throughput ratio reservoir / tar: {medians['tar'] / medians['reservoir']:.2f}x (goal >= 0.8)")
    print(f"throughput ratio reservoir / tar+sync: {medians['tar+sync'] / medians['reservoir']:.2f}x")


if __name__ == "__main__":
    main()
