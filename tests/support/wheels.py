"""Build real fixture wheels (and sdists) with the ecosystem's own tools.

`build_wheel` writes a tiny setuptools project (PEP 621 metadata in
pyproject.toml) and builds it with `pip wheel --no-build-isolation`, so the
wheel and its METADATA are exactly what real packaging produces. A
platform-specific wheel is made by retagging the pure one with `wheel
tags`, which rewrites the WHEEL file and RECORD as a real binary wheel has
them. Building takes about a second a wheel; build a set once per test
session (`build_wheels` in a session-scoped fixture) and copy from it.

    specs = [ProjectSpec("alpha", "1.0", dependencies=["beta>=1"]),
             ProjectSpec("native", "1.0", tags=Tags("cp311", "cp311", "manylinux_2_17_x86_64"))]
    paths = build_wheels(specs, out_dir)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.utils import canonicalize_name


@dataclass(frozen=True)
class Tags:
    """A wheel's compatibility tags, e.g. Tags("cp311", "cp311", "manylinux_2_17_x86_64")."""

    python: str
    abi: str
    platform: str


@dataclass(frozen=True)
class ProjectSpec:
    name: str
    version: str
    dependencies: tuple[str, ...] | list[str] = ()
    extras: dict[str, list[str]] = field(default_factory=dict)
    requires_python: str | None = None
    license: str = "MIT"
    summary: str = ""
    # None: a pure `py3-none-any` wheel.
    tags: Tags | None = None
    # Also build an sdist (setuptools' own, Metadata-Version as it writes it).
    sdist: bool = False

    @property
    def module(self) -> str:
        return canonicalize_name(self.name).replace("-", "_")


def _toml_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def _license_field(license_text: str) -> str:
    """PEP 639's string where setuptools takes it (77+); the older table form before that."""
    from importlib.metadata import version

    from packaging.version import Version

    if Version(version("setuptools")) >= Version("77"):
        return json.dumps(license_text)
    return f"{{text = {json.dumps(license_text)}}}"


def write_project(spec: ProjectSpec, root: Path) -> Path:
    """Write the source tree of `spec` under `root`; returns the project folder."""
    folder = root / f"{spec.module}-{spec.version}"
    (folder / spec.module).mkdir(parents=True)
    (folder / spec.module / "__init__.py").write_text(f'__version__ = "{spec.version}"\n')
    lines = [
        "[build-system]",
        'requires = ["setuptools"]',
        'build-backend = "setuptools.build_meta"',
        "",
        "[project]",
        f"name = {json.dumps(spec.name)}",
        f"version = {json.dumps(spec.version)}",
        f"description = {json.dumps(spec.summary or f'{spec.name}: a Reservoir test fixture')}",
        f"license = {_license_field(spec.license)}",
        f"dependencies = {_toml_list(spec.dependencies)}",
    ]
    if spec.requires_python:
        lines.append(f"requires-python = {json.dumps(spec.requires_python)}")
    if spec.extras:
        lines.append("")
        lines.append("[project.optional-dependencies]")
        lines += [f"{extra} = {_toml_list(deps)}" for extra, deps in sorted(spec.extras.items())]
    lines += ["", "[tool.setuptools]", f"packages = [{json.dumps(spec.module)}]", ""]
    (folder / "pyproject.toml").write_text("\n".join(lines))
    return folder


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def retag(wheel: Path, tags: Tags) -> Path:
    """Give a built wheel other compatibility tags (`wheel tags`), replacing it."""
    out = _run(
        [sys.executable, "-m", "wheel", "tags", "--remove", f"--python-tag={tags.python}", f"--abi-tag={tags.abi}",
         f"--platform-tag={tags.platform}", str(wheel)],
    )
    return wheel.parent / out.strip().splitlines()[-1]


def build_wheel(spec: ProjectSpec, out_dir: Path) -> list[Path]:
    """Build `spec` into `out_dir`; returns the wheel (and sdist when asked)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="reservoir-wheel-") as tmp:
        folder = write_project(spec, Path(tmp))
        build_dir = Path(tmp) / "dist"
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
              "-w", str(build_dir), str(folder)])
        built = [next(build_dir.glob("*.whl"))]
        if spec.tags is not None:
            built = [retag(built[0], spec.tags)]
        if spec.sdist:
            _run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(build_dir), str(folder)])
            built.append(next(build_dir.glob("*.tar.gz")))
        final = []
        for path in built:
            target = out_dir / path.name
            path.replace(target)
            final.append(target)
        return final


def build_wheels(specs: list[ProjectSpec], out_dir: Path, workers: int = 2) -> list[Path]:
    """Build every spec into `out_dir` (two at a time: CI has two cores).

    Specs that differ only in their tags are built once and retagged, so a
    project with wheels for several platforms costs one build.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    groups: dict[str, tuple[ProjectSpec, list[ProjectSpec]]] = {}
    for spec in specs:
        pure = replace(spec, tags=None, sdist=False)
        groups.setdefault(repr(pure), (pure, []))[1].append(spec)

    def build_group(pure: ProjectSpec, variants: list[ProjectSpec]) -> list[Path]:
        with tempfile.TemporaryDirectory(prefix="reservoir-wheels-") as tmp:
            sdist = any(v.sdist for v in variants)
            built = build_wheel(replace(pure, sdist=sdist), Path(tmp))
            wheel = next(p for p in built if p.name.endswith(".whl"))
            out = [p.replace(out_dir / p.name) for p in built if not p.name.endswith(".whl")]
            for variant in variants:
                copy = Path(tmp) / "variants" / wheel.name
                copy.parent.mkdir(exist_ok=True)
                shutil.copyfile(wheel, copy)
                tagged = retag(copy, variant.tags) if variant.tags is not None else copy
                out.append(tagged.replace(out_dir / tagged.name))
            return out

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda item: build_group(*item), groups.values()))
    return [path for paths in results for path in paths]
