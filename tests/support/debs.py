"""Build real fixture `.deb`s with `dpkg-deb`, from a small spec.

    spec = DebSpec("hello", "2.10-3", depends="libc6 (>= 2.34)",
                   files={"usr/bin/hello": "#!/bin/sh\\necho hello\\n"})
    path = build_deb(spec, out_dir)        # out_dir / hello_2.10-3_amd64.deb

Every package gets a DEP-5 copyright file (`usr/share/doc/<name>/copyright`)
naming `license`, so license vetting has something real to read.
`FIXTURE_SET` is the set the APT tests share: a virtual package and its
provider, an alternative, a versioned Provides, a Pre-Depends, Multi-Arch
same and foreign, arch all and amd64, spread over two suites.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

DEP5 = """Format: machine-readable copyright format 1.0 (DEP-5)
Upstream-Name: {name}

Files: *
Copyright: 2024 Reservoir tests
License: {license}
"""


@dataclass(frozen=True)
class DebSpec:
    name: str
    version: str
    arch: str = "amd64"
    depends: str = ""
    pre_depends: str = ""
    recommends: str = ""
    provides: str = ""
    multi_arch: str = ""
    essential: bool = False
    priority: str = "optional"
    section: str = "misc"
    source: str = ""
    license: str = "MIT"
    description: str = ""
    files: dict[str, str] = field(default_factory=dict)  # path inside the package -> text (mode 0755 under bin/)
    compression: str = "xz"  # dpkg-deb -Z: xz (Debian's), zstd (Ubuntu's since 21.10), gzip, none

    @property
    def filename(self) -> str:
        version = self.version.split(":", 1)[1] if ":" in self.version else self.version
        return f"{self.name}_{version}_{self.arch}.deb"

    def control(self) -> str:
        lines = [f"Package: {self.name}", f"Version: {self.version}", f"Architecture: {self.arch}",
                 "Maintainer: Reservoir Tests <tests@example.invalid>"]
        if self.source:
            lines.append(f"Source: {self.source}")
        for key, value in (("Multi-Arch", self.multi_arch), ("Pre-Depends", self.pre_depends),
                           ("Depends", self.depends), ("Recommends", self.recommends),
                           ("Provides", self.provides)):
            if value:
                lines.append(f"{key}: {value}")
        if self.essential:
            lines.append("Essential: yes")
        lines += [f"Section: {self.section}", f"Priority: {self.priority}",
                  f"Description: {self.description or self.name + ' fixture'}",
                  " A package built by the Reservoir tests."]
        return "\n".join(lines) + "\n"


def build_deb(spec: DebSpec, out_dir: Path) -> Path:
    """`dpkg-deb --build` of the spec into `out_dir`; reproducible (SOURCE_DATE_EPOCH)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="deb-") as tmp:
        root = Path(tmp) / "root"
        (root / "DEBIAN").mkdir(parents=True)
        (root / "DEBIAN" / "control").write_text(spec.control())
        doc = root / "usr" / "share" / "doc" / spec.name
        doc.mkdir(parents=True)
        (doc / "copyright").write_text(DEP5.format(name=spec.name, license=spec.license))
        for rel, content in spec.files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            path.chmod(0o755 if "/bin/" in f"/{rel}" else 0o644)
        out = out_dir / spec.filename
        env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
        subprocess.run(["dpkg-deb", "--root-owner-group", f"-Z{spec.compression}", "--build", str(root), str(out)],
                       check=True, capture_output=True, env=env, timeout=60)
    return out


def build_debs(specs: list[DebSpec], out_dir: Path) -> list[Path]:
    return [build_deb(spec, out_dir) for spec in specs]


def build_fixture_suites(out_dir: Path) -> dict[str, list[Path]]:
    """FIXTURE_SET built into `out_dir/<suite>/`: {suite: [.deb, ...]}."""
    suites: dict[str, list[Path]] = {}
    for suite, spec in FIXTURE_SET:
        suites.setdefault(suite, []).append(build_deb(spec, out_dir / suite))
    return suites


def have_dpkg_deb() -> bool:
    return shutil.which("dpkg-deb") is not None


# The shared fixture set: (suite, spec). `hello` needs a mail-transport-agent (virtual, provided by
# `tinymta`), `libgreet1` (Multi-Arch: same) which Pre-Depends on `greet-base`, either `nosuch-pager` or
# `less-fixture` (an alternative whose first choice does not exist), and `greet-data` (arch all,
# Multi-Arch: foreign), and `python3-fixture:any` (Multi-Arch: allowed). `greet-plugin` needs
# `greet-abi (>= 2)`, which only `libgreet1 2.0` provides with a version (in the second suite).
HELLO_SCRIPT = "#!/bin/sh\necho 'Hello from the fixture archive'\n"
FIXTURE_SET: list[tuple[str, DebSpec]] = [
    ("stable", DebSpec("hello", "1.0-1", depends="libgreet1 (>= 1.0), mail-transport-agent, "
                       "nosuch-pager | less-fixture, greet-data, python3-fixture:any",
                       files={"usr/bin/hello": HELLO_SCRIPT})),
    ("stable", DebSpec("libgreet1", "1.0-1", multi_arch="same", pre_depends="greet-base",
                       provides="greet-abi (= 1)", source="greet")),
    ("stable", DebSpec("greet-base", "1.0-1", priority="required", source="greet")),
    ("stable", DebSpec("greet-data", "1.0-1", arch="all", multi_arch="foreign", source="greet")),
    ("stable", DebSpec("tinymta", "0.5-1", provides="mail-transport-agent")),
    ("stable", DebSpec("less-fixture", "3.0-1")),
    ("stable", DebSpec("python3-fixture", "3.11-1", multi_arch="allowed")),
    ("stable", DebSpec("base-files-fixture", "12-1", essential=True, priority="required")),
    ("stable", DebSpec("greet-plugin", "1.0-1", depends="greet-abi (>= 2)")),
    ("stable-updates", DebSpec("hello", "1.1-1", depends="libgreet1 (>= 2.0), mail-transport-agent, "
                               "nosuch-pager | less-fixture, greet-data, python3-fixture:any",
                               files={"usr/bin/hello": HELLO_SCRIPT})),
    ("stable-updates", DebSpec("libgreet1", "2.0-1", multi_arch="same", pre_depends="greet-base",
                               provides="greet-abi (= 2)", source="greet")),
]
