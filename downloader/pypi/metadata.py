"""Core metadata (METADATA in wheels, PKG-INFO in sdists) and what it declares."""

from __future__ import annotations

import email.parser
import email.policy
import tarfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from packaging.version import InvalidVersion, Version

from reservoir.errors import ReservoirError


class BadMetadata(ReservoirError):
    pass


@dataclass
class CoreMetadata:
    name: str
    version: str
    metadata_version: str = ""
    requires_dist: list[str] = field(default_factory=list)
    requires_python: str | None = None
    summary: str = ""
    license: str = ""
    license_expression: str = ""
    classifiers: list[str] = field(default_factory=list)
    dynamic: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> CoreMetadata:
        return CoreMetadata(**data)

    @property
    def release_meta(self) -> dict[str, Any]:
        """The Release.meta keys of docs/catalog.md."""
        return {
            "summary": self.summary,
            "requires_dist": list(self.requires_dist),
            "requires_python": self.requires_python,
            "license_expression": self.license_expression,
            "license": self.license,
            "classifiers": list(self.classifiers),
        }

    @property
    def declared_license(self) -> str:
        return self.license_expression or self.license

    @property
    def static_dependencies(self) -> bool:
        """Whether Requires-Dist can be trusted without building (PEP 643, metadata 2.2+)."""
        try:
            recent = Version(self.metadata_version) >= Version("2.2")
        except InvalidVersion:
            return False
        return recent and "requires-dist" not in {d.lower() for d in self.dynamic}


def parse_metadata(raw: bytes, what: str) -> CoreMetadata:
    try:
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    except Exception as exc:  # noqa: BLE001 - any parse failure is bad metadata
        raise BadMetadata(f"{what}: unreadable core metadata ({exc})") from None
    name, version = message.get("Name"), message.get("Version")
    if not name or not version:
        raise BadMetadata(f"{what}: core metadata has no Name or Version")

    def one(key: str) -> str:
        value = message.get(key)
        return str(value).strip() if value is not None else ""

    def many(key: str) -> list[str]:
        return [str(v).strip() for v in message.get_all(key) or []]

    return CoreMetadata(
        name=str(name).strip(),
        version=str(version).strip(),
        metadata_version=one("Metadata-Version"),
        requires_dist=many("Requires-Dist"),
        requires_python=one("Requires-Python") or None,
        summary=one("Summary"),
        license=one("License"),
        license_expression=one("License-Expression"),
        classifiers=many("Classifier"),
        dynamic=many("Dynamic"),
    )


def read_wheel_metadata(source: Path | BinaryIO, what: str) -> bytes:
    """The bytes of `*.dist-info/METADATA` inside a wheel (a path or an open file)."""
    try:
        with zipfile.ZipFile(source) as archive:
            names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(names) != 1:
                raise BadMetadata(f"{what}: wheel has {len(names)} .dist-info/METADATA files, expected 1")
            return archive.read(names[0])
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadMetadata(f"{what}: not a readable wheel ({exc})") from None


def read_sdist_metadata(path: Path, filename: str, what: str) -> bytes | None:
    """The top-level PKG-INFO of an sdist, or None when it has none."""
    try:
        if filename.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/PKG-INFO")]
                return archive.read(names[0]) if names else None
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if member.isfile() and member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
                    extracted = archive.extractfile(member)
                    return extracted.read() if extracted is not None else None
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BadMetadata(f"{what}: not a readable sdist ({exc})") from None
    return None
