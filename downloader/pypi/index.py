"""PEP 691 JSON and PEP 503 HTML project pages, parsed into `ProjectPage`.

Both carry the same facts per file: its URL and hashes, PEP 503's
requires-python, PEP 592 yanked, PEP 658/714 core-metadata and, in JSON,
PEP 700's size and upload-time. A page is parsed by its Content-Type, as
PEP 691 says, not by guessing from the body.
"""

from __future__ import annotations

import html.parser
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from downloader.pypi.files import check_safe_filename, normalize
from reservoir.errors import ReservoirError

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
HEX_RE = re.compile(r"^[0-9a-fA-F]+$")


class MalformedPage(ReservoirError):
    pass


@dataclass(frozen=True)
class IndexFile:
    """One file as a project page lists it."""

    filename: str
    url: str  # absolute
    sha256: str | None
    requires_python: str | None = None
    yanked: bool | str = False  # False, or the reason ("" when none was given)
    # PEP 658: False (none), True (offered, hash unknown) or the metadata file's sha256.
    core_metadata: bool | str = False
    size: int | None = None
    upload_time: str | None = None

    @property
    def metadata_url(self) -> str:
        return self.url + ".metadata"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> IndexFile:
        return IndexFile(**data)


@dataclass
class ProjectPage:
    project: str  # as requested (normalized)
    files: list[IndexFile] = field(default_factory=list)
    # The index has no such project (only said of dependencies; a requested one is an error).
    missing: bool = False
    # The upstream's change serial for the project (PyPI's `_last-serial`), when it offers one.
    serial: int | None = None

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.files]

    @staticmethod
    def from_json(project: str, data: list[dict[str, Any]]) -> ProjectPage:
        return ProjectPage(project, [IndexFile.from_json(f) for f in data])


def parse_page(project: str, page_url: str, content_type: str, body: bytes) -> ProjectPage:
    """Parse one project page; raises MalformedPage naming the project and the cause."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime.endswith("json"):
        return _parse_json(project, page_url, body)
    return _parse_html(project, page_url, body)


def _malformed(project: str, cause: str) -> MalformedPage:
    return MalformedPage(
        f"project {project!r}: malformed index page: {cause}",
        hint="check the channel's upstream; nothing was changed",
    )


def _sha256_of(project: str, hashes: dict[str, Any]) -> str | None:
    value = hashes.get("sha256")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64 or not HEX_RE.match(value):
        raise _malformed(project, f"bad sha256 {str(value)[:80]!r}")
    return value.lower()


def _core_metadata(project: str, value: Any) -> bool | str:
    if isinstance(value, dict):
        return _sha256_of(project, value) or True
    return bool(value)


def _parse_json(project: str, page_url: str, body: bytes) -> ProjectPage:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _malformed(project, f"invalid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise _malformed(project, "JSON has no 'files' list")
    page = ProjectPage(project, serial=_serial(data.get("meta")))
    for entry in data["files"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str) or not isinstance(entry.get("url"), str):
            raise _malformed(project, "a file entry lacks 'filename' or 'url'")
        hashes = entry.get("hashes") or {}
        if not isinstance(hashes, dict):
            raise _malformed(project, f"'hashes' of {entry['filename']!r} is not an object")
        yanked = entry.get("yanked", False)
        # PEP 714 renamed dist-info-metadata to core-metadata; old servers send the former.
        metadata = entry.get("core-metadata", entry.get("dist-info-metadata", False))
        size = entry.get("size")
        page.files.append(
            IndexFile(
                filename=check_safe_filename(project, entry["filename"]),
                url=urldefrag(urljoin(page_url, entry["url"]))[0],
                sha256=_sha256_of(project, hashes),
                requires_python=entry.get("requires-python") or None,
                yanked=yanked if isinstance(yanked, str) else bool(yanked),
                core_metadata=_core_metadata(project, metadata),
                size=size if isinstance(size, int) and size >= 0 else None,
                upload_time=entry.get("upload-time") if isinstance(entry.get("upload-time"), str) else None,
            )
        )
    return page


def _serial(meta: Any) -> int | None:
    value = meta.get("_last-serial") if isinstance(meta, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def parse_serial_header(value: str | None) -> int | None:
    """PyPI's X-PyPI-Last-Serial; None when absent or not a number."""
    return int(value) if value and value.strip().isdigit() else None


def parse_root_serial(body: bytes) -> int | None:
    """The root index's own `meta._last-serial` (the upstream's latest change)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return _serial(data.get("meta")) if isinstance(data, dict) else None


def parse_root_serials(content_type: str, body: bytes) -> dict[str, int] | None:
    """{normalized project: serial} from a PEP 691 JSON root index; None when it offers no serials.

    A root without `meta._last-serial` (or an HTML one) says nothing about
    changes, so the caller asks each project page instead.
    """
    if not content_type.split(";", 1)[0].strip().lower().endswith("json"):
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or _serial(data.get("meta")) is None or not isinstance(data.get("projects"), list):
        return None
    serials = {}
    for entry in data["projects"]:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            serial = _serial(entry)
            if serial is not None:
                serials[normalize(entry["name"])] = serial
    return serials


class _AnchorCollector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.base: str | None = None
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        if tag == "a":
            self._open = dict(attrs)
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, "".join(self._text).strip()))
            self._open = None


def _hash_fragment(project: str, fragment: str) -> str | None:
    if not fragment:
        return None
    algo, sep, value = fragment.partition("=")
    if not sep:
        raise _malformed(project, f"bad hash fragment #{fragment[:80]}")
    return _sha256_of(project, {algo: value}) if algo == "sha256" else None


def _parse_html(project: str, page_url: str, body: bytes) -> ProjectPage:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed(project, "HTML is not UTF-8") from None
    if "<" not in text:
        raise _malformed(project, "not an HTML document")
    collector = _AnchorCollector()
    collector.feed(text)
    collector.close()
    page = ProjectPage(project)
    # Links resolve against a <base href> when the page has one, as in pip.
    base_url = urljoin(page_url, collector.base) if collector.base else page_url
    for attrs, text_content in collector.anchors:
        href = attrs.get("href")
        if not href:
            raise _malformed(project, "a link has no href")
        url, fragment = urldefrag(urljoin(base_url, href))
        filename = text_content or unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        check_safe_filename(project, filename)
        yanked_attr = attrs.get("data-yanked")
        metadata_attr = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        metadata: bool | str = False
        if metadata_attr is not None:
            # "sha256=<hex>" names the metadata file's hash; "true" (or another hash) offers it unhashed.
            metadata = (_hash_fragment(project, metadata_attr) if "=" in metadata_attr else None) or True
        page.files.append(
            IndexFile(
                filename=filename,
                url=url,
                sha256=_hash_fragment(project, fragment),
                requires_python=attrs.get("data-requires-python") or None,
                yanked=False if yanked_attr is None else yanked_attr,
                core_metadata=metadata,
            )
        )
    return page
