"""The site's PyPI tree: PEP 503 HTML and PEP 691 JSON for every project.

What clients see of a generation::

    simple/index.html, index.json          the project list (and .gz of each): the aggregate
    simple/<project>/index.html, .json     one leaf per normalized name (and .gz)
    files/<sha256>/<filename>              the file, hard-linked from the blob store
    files/<sha256>/<filename>.metadata     its core metadata (PEP 658/714)

(``layout.py`` says how generations share these on disk.)

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
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from reservoir.blobs import BlobStore
from reservoir.models import Artifact, ArtifactState, Channel, Gate, Release, ReleaseState
from restorer.publish import Leaf, ReleaseRef

API_VERSION = "1.1"
SIMPLE = "simple/"
QUERY_CHUNK = 500
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


def collect_projects(session: Session, names: Collection[str] | None = None) -> dict[str, ProjectPage]:
    """Served PyPI projects (all, or those named): active, allowed releases with stored files.

    Releases are read in id order, so a file two channels share and a project's
    display name come from the same release whether one project or all are read.
    """
    query = (
        select(Release)
        .join(Channel)
        .where(Channel.kind == "pypi", Release.state == ReleaseState.ACTIVE, Release.gate == Gate.ALLOWED)
        .options(selectinload(Release.artifacts))
        .order_by(Release.id)
    )
    if names is None:
        chunks: list[Any] = [query]
    else:
        ordered = sorted(names)
        chunks = [query.where(Release.name.in_(ordered[i : i + QUERY_CHUNK])) for i in range(0, len(ordered), QUERY_CHUNK)]
    projects: dict[str, ProjectPage] = {}
    for chunk in chunks:
        for release in session.scalars(chunk):
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
        # PEP 714: JSON carries `core-metadata` only; the old key crashes pip 22.3 to 23.1 (Debian 12's pip among them).
        entry["core-metadata"] = {"sha256": f.metadata_sha256} if f.metadata_sha256 else False
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


def root_json(projects: Mapping[str, str]) -> dict[str, Any]:
    """`projects`: normalized name -> display name."""
    return {"meta": {"api-version": API_VERSION}, "projects": [{"name": projects[name]} for name in sorted(projects)]}


def root_html(projects: Mapping[str, str]) -> str:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "<head>",
        f'<meta name="pypi:repository-version" content="{API_VERSION}">',
        "<title>Simple index</title>",
        "</head>",
        "<body>",
    ]
    for name in sorted(projects):
        lines.append(f'<a href="{quote(name)}/">{html.escape(projects[name])}</a><br>')
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines)


def with_gzip(pages: dict[str, bytes]) -> dict[str, bytes]:
    """Each page and its gzip twin (served when the client accepts gzip), compressed the same way every time."""
    return {**pages, **{name + ".gz": gzip.compress(content, compresslevel=9, mtime=0) for name, content in pages.items()}}


def _dump_json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=False).encode()


def project_leaf(page: ProjectPage, blobs: BlobStore) -> Leaf:
    # Pages live at simple/<project>/; files at files/...: two levels up.
    prefix = "../../"
    files = {}
    for f in page.files.values():
        files[f"files/{f.sha256}/{f.filename}"] = f.sha256
        if f.metadata_sha256 and blobs.has(f.metadata_sha256):
            files[f"files/{f.sha256}/{f.filename}.metadata"] = f.metadata_sha256
    pages = {
        "index.json": _dump_json(project_json(page, prefix)),
        "index.html": project_html(page, prefix).encode(),
    }
    return Leaf(key=SIMPLE + page.name, pages=with_gzip(pages), files=files, summary=page.display_name)


@dataclass
class PypiPublisher:
    """The merged PyPI tree of a site (see the module docstring); a leaf is one project's folder."""

    kind: str = "pypi"

    def pages_for(self, release: ReleaseRef) -> Iterable[str]:
        return (SIMPLE + canonicalize_name(release.name),)

    def leaf_keys(self, session: Session) -> Iterable[str]:
        names = session.scalars(
            select(Release.name)
            .join(Channel)
            .where(Channel.kind == "pypi", Release.state == ReleaseState.ACTIVE, Release.gate == Gate.ALLOWED)
            .distinct()
        )
        return {SIMPLE + canonicalize_name(name) for name in names}

    def render_leaves(self, session: Session, blobs: BlobStore, keys: Sequence[str]) -> Iterable[Leaf]:
        names = {key[len(SIMPLE) :] for key in keys if key.startswith(SIMPLE)}
        return [project_leaf(page, blobs) for page in collect_projects(session, names).values()]

    def render_aggregates(self, summaries: Mapping[str, str]) -> Mapping[str, bytes]:
        projects = {key[len(SIMPLE) :]: display for key, display in summaries.items()}
        pages = with_gzip({"index.json": _dump_json(root_json(projects)), "index.html": root_html(projects).encode()})
        return {"simple/" + name: content for name, content in pages.items()}

    def files_in_use(self, session: Session, files: Mapping[str, str]) -> set[str]:
        shas = sorted({path.split("/")[1] for path in files if path.count("/") == 2})
        used: set[str] = set()
        for i in range(0, len(shas), QUERY_CHUNK):
            rows = session.execute(
                select(Artifact.sha256, Artifact.filename)
                .join(Release)
                .join(Channel)
                .where(
                    Artifact.sha256.in_(shas[i : i + QUERY_CHUNK]),
                    Artifact.state == ArtifactState.STORED,
                    Channel.kind == "pypi",
                    Release.state == ReleaseState.ACTIVE,
                    Release.gate == Gate.ALLOWED,
                )
            )
            for sha, filename in rows:
                used.update((f"files/{sha}/{filename}", f"files/{sha}/{filename}.metadata"))
        return used & set(files)
