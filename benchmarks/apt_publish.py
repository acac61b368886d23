"""APT publish: our incremental publisher against aptly (publish snapshot) and reprepro (includedeb, export).

The packages are the host's real Debian `main` index (`benchmarks/apt.py`
fetches and verifies it into ~/.cache/reservoir-bench/apt/): the first `--count`
amd64/all stanzas, each made into a small real `.deb` with that stanza's
control fields (name, version, dependencies, Provides, Multi-Arch, section,
priority, maintainer, description); the payload is one small file, so the
tools read real metadata and the timing is the publishing, not the copying.
The three tools get the same pool of files on the same disk, in one run:

- ours: the catalog filled as an import fills it (rows, blobs), then
  `publish_site` (full: every index rendered, compressed, hashed, signed,
  pool files linked) and, after 10 packages got a new version, the
  incremental publish an import makes (`publish_changes` of the touched leaf);
- aptly: `repo add` (untimed ingest), `snapshot create`, `publish snapshot`
  (signed); the republish is `repo add` of the 10, a snapshot, `publish switch`;
- reprepro: `includedeb` then `export` (signed), each timed; the republish is
  `includedeb` of the 10 then `export`.

All sign with gpg (ed25519) and write Packages, .gz and .xz. Printed: the
seconds of each step and the two ratios the issue asks for (full publish
against each tool's; our republish against our full publish).

    .venv/bin/python benchmarks/apt_publish.py --count 5000
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert  # noqa: E402

from downloader.apt.adapter import release_meta  # noqa: E402
from downloader.apt.packages import PackageRecord, parse_packages  # noqa: E402
from reservoir.context import AppContext  # noqa: E402
from reservoir.home import create_home  # noqa: E402
from reservoir.models import Artifact, ArtifactState, Channel, Release  # noqa: E402
from restorer.gpgkey import site_key, stop_agent  # noqa: E402
from restorer.publish import publish_changes, publish_site  # noqa: E402
from restorer.publish.apt import leaf_key  # noqa: E402

SUITE = "bookworm"
CHANGED = 10
KEEP_FIELDS = ("Package", "Source", "Version", "Architecture", "Maintainer", "Installed-Size", "Depends",
               "Pre-Depends", "Recommends", "Suggests", "Provides", "Conflicts", "Breaks", "Replaces",
               "Multi-Arch", "Essential", "Section", "Priority", "Homepage", "Description")


def load_index_module() -> object:
    spec = importlib.util.spec_from_file_location("bench_apt_index", Path(__file__).with_name("apt.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def control_of(record: PackageRecord, version: str | None = None) -> str:
    lines = []
    for line in record.control().splitlines():
        if line.startswith((" ", "\t")):
            continue  # folded lines: the short description is enough
        name, _, value = line.partition(":")
        if name in KEEP_FIELDS:
            if name == "Version" and version:
                value = " " + version
            lines.append(f"{name}:{value}")
    return "\n".join(lines) + "\n"


def _ar_member(name: str, data: bytes) -> bytes:
    header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
    return header + data + (b"\n" if len(data) % 2 else b"")


def _tar_gz(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def make_deb(control: str, path: Path) -> None:
    """A real .deb (ar: debian-binary, control.tar.gz, data.tar.gz), as dpkg-deb writes one, without its cost."""
    name = control.split("\n", 1)[0].split(": ", 1)[1]
    data = _tar_gz({f"./usr/share/doc/{name}/README": f"{name}\n".encode()})
    path.write_bytes(b"!<arch>\n" + _ar_member("debian-binary", b"2.0\n")
                     + _ar_member("control.tar.gz", _tar_gz({"./control": control.encode()}))
                     + _ar_member("data.tar.gz", data))


def pick(records: list[PackageRecord], count: int) -> list[PackageRecord]:
    seen: set[str] = set()
    out = []
    for record in records:
        if record.arch in ("amd64", "all") and record.name not in seen:
            seen.add(record.name)
            out.append(record)
    step = max(1, len(out) // count)
    return out[::step][:count]


def stanza_record(deb: Path, control: str, suite: str) -> PackageRecord:
    data = deb.read_bytes()
    text = (control.rstrip("\n") + f"\nFilename: pool/main/x/{deb.name}\nSize: {len(data)}\n"
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    (record,) = parse_packages(text, "bench", suite, "main")
    return record


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(label: str, results: dict[str, float], command: list[str], env: dict[str, str] | None = None,
          cwd: Path | None = None, cpu: dict[str, float] | None = None) -> None:
    start, start_cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    results[label] = time.perf_counter() - start
    if cpu is not None:
        cpu[label] = children_cpu() - start_cpu  # the tool and what it ran (gpg), once waited for
    if done.returncode != 0:
        raise SystemExit(f"{label}: {' '.join(command[:3])} failed: {(done.stdout + done.stderr)[-800:]}")


def fill_catalog(app: AppContext, records: list[tuple[PackageRecord, Path]]) -> None:
    with app.db.transaction() as session:
        channel = session.query(Channel).filter_by(name="bench").one_or_none()
        if channel is None:
            channel = Channel(name="bench", kind="apt", upstream="", options={"arch": "amd64", "suites": [SUITE]})
            session.add(channel)
            session.flush()
        rows, files = [], []
        for record, deb in records:
            sha = app.blobs.put_file(deb)
            rows.append({"channel_id": channel.id, "name": record.name, "display_name": record.name,
                         "version": record.version, "meta": release_meta(record)})
            files.append({"filename": deb.name, "sha256": sha, "size": deb.stat().st_size,
                          "state": ArtifactState.STORED, "meta": {"architecture": record.arch}})
        ids = session.scalars(insert(Release).returning(Release.id, sort_by_parameter_order=True), rows).all()
        session.execute(insert(Artifact), [{**f, "release_id": rid} for rid, f in zip(ids, files, strict=True)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--ours-only", action="store_true", help="skip aptly and reprepro (profiling)")
    args = parser.parse_args()
    # A sample of an index is no closure: the installability check reports most of it. Its cost counts, its log does not.
    logging.getLogger("restorer.publish.apt").setLevel(logging.ERROR)
    for tool in ("aptly", "reprepro", "gpg"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install aptly reprepro gnupg)")
    index_module = load_index_module()
    index, _url = index_module.real_index(SUITE, "main", "amd64")  # type: ignore[attr-defined]
    records = pick(parse_packages(Path(index).read_bytes(), "index", SUITE, "main"), args.count)
    work = Path(tempfile.mkdtemp(prefix="apt-publish-bench-"))
    results: dict[str, float] = {}
    cpu: dict[str, float] = {}  # CPU seconds (user + system): the machine is shared, wall times move with its load
    try:
        pool, newer = work / "pool", work / "newer"
        pool.mkdir()
        newer.mkdir()
        made: list[tuple[PackageRecord, Path]] = []
        for record in records:
            control = control_of(record)
            deb = pool / f"{record.name}_{record.version.split(':')[-1]}_{record.arch}.deb"
            make_deb(control, deb)
            made.append((stanza_record(deb, control, SUITE), deb))
        changed: list[tuple[PackageRecord, Path]] = []
        for record, _ in made[:: len(made) // CHANGED][:CHANGED]:
            version = record.version + "+bench1"
            control = control_of(record, version)
            deb = newer / f"{record.name}_{version.split(':')[-1]}_{record.arch}.deb"
            make_deb(control, deb)
            changed.append((stanza_record(deb, control, SUITE), deb))

        # ours
        create_home(work / "site", "site")
        app = AppContext(work / "site")
        key = site_key(app.home.keys_dir)
        fill_catalog(app, made)
        # Our CPU: this process's threads and the gpg it runs to sign.
        start, start_cpu = time.perf_counter(), time.process_time() + children_cpu()
        publish_site(app)
        results["ours: full publish"] = time.perf_counter() - start
        cpu["ours: full publish"] = time.process_time() + children_cpu() - start_cpu
        fill_catalog(app, changed)
        start, start_cpu = time.perf_counter(), time.process_time() + children_cpu()
        publish_changes(app, {"apt": {leaf_key("bench", SUITE, "main")}})
        results["ours: republish after 10 changes"] = time.perf_counter() - start
        cpu["ours: republish after 10 changes"] = time.process_time() + children_cpu() - start_cpu
        app.close()

        if args.ours_only:
            for label, seconds in results.items():
                print(f"  {label:<40} {seconds:8.3f} s  (CPU {cpu.get(label, 0):.3f} s)")
            return
        env = {**os.environ, "GNUPGHOME": str(key.home)}
        # aptly
        aptly_conf = work / "aptly.conf"
        aptly_conf.write_text(json.dumps({"rootDir": str(work / "aptly"), "gpgProvider": "gpg2",
                                          "architectures": ["amd64"], "skipContentsPublishing": True}))
        aptly = ["aptly", f"-config={aptly_conf}"]
        timed("aptly: repo create", results, [*aptly, "repo", "create", "-distribution", SUITE,
                                              "-component", "main", "bench"], env, cpu=cpu)
        timed("aptly: repo add (ingest)", results, [*aptly, "repo", "add", "bench", str(pool)], env, cpu=cpu)
        timed("aptly: snapshot create", results, [*aptly, "snapshot", "create", "s1", "from", "repo", "bench"], env,
              cpu=cpu)
        timed("aptly: publish snapshot", results, [*aptly, "publish", "snapshot", f"-gpg-key={key.fingerprint}",
                                                   f"-distribution={SUITE}", "s1"], env, cpu=cpu)
        timed("aptly: repo add 10 (ingest)", results, [*aptly, "repo", "add", "bench", str(newer)], env, cpu=cpu)
        timed("aptly: snapshot create 2", results, [*aptly, "snapshot", "create", "s2", "from", "repo", "bench"], env,
              cpu=cpu)
        timed("aptly: publish switch", results, [*aptly, "publish", "switch", f"-gpg-key={key.fingerprint}", SUITE,
                                                 "s2"], env, cpu=cpu)
        # reprepro
        base = work / "reprepro"
        (base / "conf").mkdir(parents=True)
        (base / "conf" / "distributions").write_text(
            f"Codename: {SUITE}\nSuite: {SUITE}\nArchitectures: amd64\nComponents: main\n"
            f"SignWith: {key.fingerprint}\nDebIndices: Packages Release . .gz .xz\n")
        (base / "conf" / "options").write_text("ignore wrongdistribution\nignore forbiddenchar\n")
        debs = sorted(str(p) for p in pool.iterdir())
        timed("reprepro: includedeb", results, ["reprepro", "-b", str(base), "--export=never", "includedeb", SUITE,
                                                *debs], env, cpu=cpu)
        timed("reprepro: export", results, ["reprepro", "-b", str(base), "export", SUITE], env, cpu=cpu)
        timed("reprepro: includedeb 10", results, ["reprepro", "-b", str(base), "--export=never", "includedeb", SUITE,
                                                   *sorted(str(p) for p in newer.iterdir())], env, cpu=cpu)
        timed("reprepro: export after 10", results, ["reprepro", "-b", str(base), "export", SUITE], env, cpu=cpu)
        stop_agent(key.home)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    ours = results["ours: full publish"]
    aptly_full = results["aptly: snapshot create"] + results["aptly: publish snapshot"]
    reprepro_full = results["reprepro: includedeb"] + results["reprepro: export"]
    print(f"APT publish, {len(records)} packages of the real {SUITE} main index ({CHANGED} changed for the republish)")
    for label, seconds in results.items():
        print(f"  {label:<40} {seconds:8.3f} s  (CPU {cpu.get(label, 0):.3f} s)")
    print(f"  full publish: ours {ours:.2f} s; aptly snapshot+publish {aptly_full:.2f} s ({aptly_full / ours:.1f}x ours); "
          f"reprepro export {results['reprepro: export']:.2f} s ({results['reprepro: export'] / ours:.1f}x ours), "
          f"includedeb+export {reprepro_full:.2f} s ({reprepro_full / ours:.1f}x ours)")
    republish = results["ours: republish after 10 changes"]
    cpu_full = cpu["ours: full publish"]
    cpu_aptly = cpu["aptly: snapshot create"] + cpu["aptly: publish snapshot"]
    print(f"  full publish, CPU: ours {cpu_full:.2f} s; aptly snapshot+publish {cpu_aptly:.2f} s; "
          f"reprepro export {cpu['reprepro: export']:.2f} s, "
          f"includedeb+export {cpu['reprepro: includedeb'] + cpu['reprepro: export']:.2f} s")
    cpu_republish = cpu["ours: republish after 10 changes"]
    print(f"  republish after {CHANGED} changes, CPU: ours {cpu_republish:.3f} s = full / {cpu_full / cpu_republish:.1f}")
    print(f"  republish after {CHANGED} changes: ours {republish:.3f} s = full / {ours / republish:.1f}; "
          f"aptly snapshot+switch {results['aptly: snapshot create 2'] + results['aptly: publish switch']:.2f} s; "
          f"reprepro export {results['reprepro: export after 10']:.2f} s")


if __name__ == "__main__":
    main()
