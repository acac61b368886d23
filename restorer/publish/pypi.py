"""The site's PyPI tree: PEP 503 HTML and PEP 691 JSON for every project.

Layout of one generation::

    simple/index.html, index.json          the project list (and .gz of each)
    simple/<project>/index.html, .json     one page per normalized name (and .gz)
    files/<sha256>/<filename>              the file, hard-linked from the blob store
    files/<sha256>/<filename>.metadata     its core metadata (PEP 658/714)

All PyPI channels are merged into one index, so a user needs one
``--index-url``. Pages carry sha256 hashes, requires-python, PEP 592 yanked,
PEP 658/714 metadata hashes and the PEP 700 fields (versions, size,
upload-time). Pages are written pre-compressed so neither our server nor
nginx compresses per request.
"""

from __future__ import annotations

import gzip
import html
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from reservoir.blobs import BlobStore
from reservoir.models import Artifact, ArtifactState, Channel, Gate, Release, ReleaseState
from restorer.publish.tree import safe_join

API_VERSION = "1.1"
PUBLISH_THREADS = 4
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"


@dataclass(frozen=True)
class PublishedFile:
    filename: str
    sha256: str
    size: int | None
    requires_python: str | None
    yanked: bool | str
    upload_time: str | None
    metadata_sha256: str | None

    @property
    def url_path(self) -> str:
        """Relative to the tree root."""
        return f"files/{self.sha256}/{quote(self.filename)}"


@dataclass
class ProjectPage:
    name: str  # normalized
    display_name: str
    versions: set[str] = field(default_factory=set)
    files: dict[str, PublishedFile] = field(default_factory=dict)  # by filename


def _upload_time(value: Any) -> str | None:
    """PEP 700 wants ISO 8601 in UTC with a `Z`."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _yanked(value: Any) -> bool | str:
    if value is False or value is None:
        return False
    if value is True:
        return True
    return str(value)


def collect_projects(session: Session) -> dict[str, ProjectPage]:
    """Every served PyPI project: active, allowed releases with stored files."""
    releases = session.scalars(
        select(Release)
        .join(Channel)
        .where(Channel.kind == "pypi", Release.state == ReleaseState.ACTIVE, Release.gate == Gate.ALLOWED)
        .options(selectinload(Release.artifacts))
    ).all()
    projects: dict[str, ProjectPage] = {}
    for release in releases:
        name = canonicalize_name(release.name)
        page = projects.setdefault(name, ProjectPage(name=name, display_name=release.display_name or name))
        stored = [a for a in release.artifacts if a.state == ArtifactState.STORED]
        if not stored:
            continue
        page.versions.add(release.version)
        for artifact in stored:
            page.files.setdefault(artifact.filename, _published_file(artifact, release))
    return {name: page for name, page in projects.items() if page.files}


def _published_file(artifact: Artifact, release: Release) -> PublishedFile:
    meta = artifact.meta or {}
    # Indexes that omit data-requires-python still ship it in the metadata.
    requires_python = meta.get("requires_python") or (release.meta or {}).get("requires_python") or None
    return PublishedFile(
        filename=artifact.filename,
        sha256=artifact.sha256,
        size=artifact.size,
        requires_python=requires_python,
        yanked=_yanked(meta.get("yanked", False)),
        upload_time=_upload_time(meta.get("upload_time")),
        metadata_sha256=(meta.get("aux_blobs") or {}).get("metadata"),
    )


def _version_key(version: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def _sorted_files(page: ProjectPage) -> list[PublishedFile]:
    return sorted(page.files.values(), key=lambda f: f.filename)


def project_json(page: ProjectPage, prefix: str) -> dict[str, Any]:
    files = []
    for f in _sorted_files(page):
        entry: dict[str, Any] = {
            "filename": f.filename,
            "url": prefix + f.url_path,
            "hashes": {"sha256": f.sha256},
            "requires-python": f.requires_python,
            "yanked": f.yanked,
        }
        if f.size is not None:
            entry["size"] = f.size
        if f.upload_time:
            entry["upload-time"] = f.upload_time
        if f.metadata_sha256:
            entry["core-metadata"] = {"sha256": f.metadata_sha256}
            entry["dist-info-metadata"] = {"sha256": f.metadata_sha256}
        else:
            entry["core-metadata"] = False
            entry["dist-info-metadata"] = False
        files.append(entry)
    return {
        "meta": {"api-version": API_VERSION},
        "name": page.name,
        "versions": sorted(page.versions, key=_version_key),
        "files": files,
    }


def project_html(page: ProjectPage, prefix: str) -> str:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "<head>",
        f'<meta name="pypi:repository-version" content="{API_VERSION}">',
        f"<title>Links for {html.escape(page.name)}</title>",
        "</head>",
        "<body>",
        f"<h1>Links for {html.escape(page.name)}</h1>",
    ]
    for f in _sorted_files(page):
        attrs = [f'href="{html.escape(prefix + f.url_path)}#sha256={f.sha256}"']
        if f.requires_python:
            attrs.append(f'data-requires-python="{html.escape(f.requires_python)}"')
        if f.yanked is not False:
            reason = "" if f.yanked is True else f.yanked
            attrs.append(f'data-yanked="{html.escape(reason)}"')
        if f.metadata_sha256:
            attrs.append(f'data-core-metadata="sha256={f.metadata_sha256}"')
            attrs.append(f'data-dist-info-metadata="sha256={f.metadata_sha256}"')
        lines.append(f"<a {' '.join(attrs)}>{html.escape(f.filename)}</a><br>")
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines)


def root_json(projects: dict[str, ProjectPage]) -> dict[str, Any]:
    return {"meta": {"api-version": API_VERSION}, "projects": [{"name": p.display_name} for p in _ordered(projects)]}


def root_html(projects: dict[str, ProjectPage]) -> str:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "<head>",
        f'<meta name="pypi:repository-version" content="{API_VERSION}">',
        "<title>Simple index</title>",
        "</head>",
        "<body>",
    ]
    for p in _ordered(projects):
        lines.append(f'<a href="{quote(p.name)}/">{html.escape(p.display_name)}</a><br>')
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines)


def _ordered(projects: dict[str, ProjectPage]) -> list[ProjectPage]:
    return [projects[name] for name in sorted(projects)]


def write_page(tree: Path, relative: str, content: bytes) -> None:
    """Write a page and its gzip twin (served when the client accepts gzip), both inside `tree`."""
    path = safe_join(tree, relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    safe_join(tree, relative + ".gz").write_bytes(gzip.compress(content, compresslevel=9, mtime=0))


def _dump_json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=False).encode()


@dataclass
class PypiPublisher:
    """Writes the merged PyPI tree of a site (see the module docstring)."""

    kind: str = "pypi"

    def build(self, session: Session, blobs: BlobStore, tree: Path) -> int:
        projects = collect_projects(session)
        # Pages live at simple/<project>/; files at files/...: two levels up.
        prefix = "../../"

        def write_project(page: ProjectPage) -> None:
            # Names and file names come from bundles: every path is proven to stay in the tree.
            write_page(tree, f"simple/{page.name}/index.json", _dump_json(project_json(page, prefix)))
            write_page(tree, f"simple/{page.name}/index.html", project_html(page, prefix).encode())
            for f in page.files.values():
                blobs.link_into(f.sha256, safe_join(tree, "files", f.sha256, f.filename))
                if f.metadata_sha256 and blobs.has(f.metadata_sha256):
                    blobs.link_into(f.metadata_sha256, safe_join(tree, "files", f.sha256, f.filename + ".metadata"))

        # A project costs about ten file-system calls and little Python: threads overlap the calls'
        # waiting (BENCHMARKS.md, bundles), and list() re-raises the first failure.
        with ThreadPoolExecutor(max_workers=PUBLISH_THREADS, thread_name_prefix="publish") as pool:
            list(pool.map(write_project, projects.values()))
        write_page(tree, "simple/index.json", _dump_json(root_json(projects)))
        write_page(tree, "simple/index.html", root_html(projects).encode())
        return len(projects)

