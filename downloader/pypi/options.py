"""A PyPI channel's options (Channel.options, see docs/catalog.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from downloader.pypi.closure import parse_requirement
from downloader.pypi.targets import Target, check_platform, check_python, targets_of
from reservoir.errors import ConfigError


@dataclass
class PyPIOptions:
    packages: list[str]
    pythons: list[str]
    platforms: list[str]
    latest: int = 1
    sdists: bool = False
    warnings: list[str] = field(default_factory=list, compare=False)

    def __post_init__(self) -> None:
        if not self.packages:
            raise ConfigError("a pypi channel needs at least one --package or --requirements entry")
        for text in self.packages:
            parse_requirement(text)
        for python in self.pythons:
            check_python(python)
        for platform in self.platforms:
            check_platform(platform)
        if self.latest < 1:
            raise ConfigError(f"--latest {self.latest} must be at least 1")

    @property
    def requirements(self) -> list[Requirement]:
        return [parse_requirement(text) for text in self.packages]

    @property
    def targets(self) -> list[Target]:
        return targets_of(self.pythons, self.platforms)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("warnings")
        return data

    @staticmethod
    def from_json(data: dict[str, Any]) -> PyPIOptions:
        return PyPIOptions(
            packages=list(data.get("packages", [])),
            pythons=list(data.get("pythons", [])),
            platforms=list(data.get("platforms", [])),
            latest=int(data.get("latest", 1)),
            sdists=bool(data.get("sdists", False)),
        )


def read_requirements_file(path: Path) -> list[str]:
    """PEP 508 lines of a requirements file; comments and blank lines are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read requirements file {path}: {exc.strerror}") from None
    out = []
    for number, line in enumerate(lines, 1):
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("-"):
            raise ConfigError(f"{path}:{number}: pip option {text.split()[0]!r} is not supported here",
                              hint="list only requirements; the upstream is the channel's --upstream")
        parse_requirement(text, f"{path}:{number}")
        out.append(text)
    return out
