"""Parsing PEP 503 HTML and PEP 691 JSON project pages."""

from __future__ import annotations

import json

import pytest

from downloader.pypi.files import UnsafeFilename, check_safe_filename, parse_distribution
from downloader.pypi.index import MalformedPage, parse_page

SHA = "a" * 64
META_SHA = "b" * 64
PAGE = "https://127.0.0.1:8080/simple/demo/"


def test_html_page_carries_pep_503_592_658_fields() -> None:
    body = f"""<!DOCTYPE html><html><body>
    <a href="../../files/demo-1.0-py3-none-any.whl#sha256={SHA}" data-requires-python="&gt;=3.9"
       data-core-metadata="sha256={META_SHA}">demo-1.0-py3-none-any.whl</a>
    <a href="/files/demo-0.9.tar.gz#sha256={SHA}" data-yanked="">demo-0.9.tar.gz</a>
    <a href="https://127.0.0.1:9/x/demo-0.8-py3-none-any.whl#md5=00" data-yanked="bad"
       data-dist-info-metadata="true">demo-0.8-py3-none-any.whl</a>
    </body></html>""".encode()
    page = parse_page("demo", PAGE, "text/html; charset=utf-8", body)
    first, second, third = page.files
    assert first.url == "https://127.0.0.1:8080/files/demo-1.0-py3-none-any.whl"
    assert (first.sha256, first.requires_python, first.yanked, first.core_metadata) == (SHA, ">=3.9", False, META_SHA)
    assert first.metadata_url == first.url + ".metadata"
    assert (second.url, second.yanked) == ("https://127.0.0.1:8080/files/demo-0.9.tar.gz", "")
    assert (third.sha256, third.yanked, third.core_metadata) == (None, "bad", True)


def test_json_page_carries_pep_691_700_714_fields() -> None:
    body = json.dumps({
        "meta": {"api-version": "1.1"},
        "name": "demo",
        "files": [
            {"filename": "demo-1.0-py3-none-any.whl", "url": "../../files/demo-1.0-py3-none-any.whl",
             "hashes": {"sha256": SHA.upper()}, "requires-python": ">=3.8", "yanked": "security",
             "core-metadata": {"sha256": META_SHA}, "size": 1234, "upload-time": "2024-01-02T03:04:05Z"},
            {"filename": "demo-0.9.tar.gz", "url": "https://127.0.0.1:9/demo-0.9.tar.gz",
             "hashes": {"sha256": SHA}, "dist-info-metadata": True, "yanked": True},
        ],
    }).encode()
    page = parse_page("demo", PAGE, "application/vnd.pypi.simple.v1+json", body)
    first, second = page.files
    assert first.url == "https://127.0.0.1:8080/files/demo-1.0-py3-none-any.whl"
    assert (first.sha256, first.yanked, first.core_metadata, first.size) == (SHA, "security", META_SHA, 1234)
    assert first.upload_time == "2024-01-02T03:04:05Z" and first.requires_python == ">=3.8"
    assert (second.yanked, second.core_metadata, second.size) == (True, True, None)


def test_file_index_urls_resolve_against_the_page() -> None:
    body = f'<a href="../../files/demo-1.0.tar.gz#sha256={SHA}">demo-1.0.tar.gz</a>'.encode()
    page = parse_page("demo", "file:///srv/index/simple/demo/", "text/html", body)
    assert page.files[0].url == "file:///srv/index/files/demo-1.0.tar.gz"


@pytest.mark.parametrize(
    ("content_type", "body", "cause"),
    [
        ("application/vnd.pypi.simple.v1+json", b"{nope", "invalid JSON"),
        ("application/vnd.pypi.simple.v1+json", b'{"name": "demo"}', "no 'files' list"),
        ("application/vnd.pypi.simple.v1+json", b'{"files": [{"filename": "x"}]}', "lacks 'filename' or 'url'"),
        ("text/html", b"\xff\xfe\x00", "not UTF-8"),
        ("text/html", b"just text", "not an HTML document"),
        ("text/html", b"<a>demo-1.0.tar.gz</a>", "has no href"),
        ("text/html", b'<a href="demo-1.0.tar.gz#sha256=xyz">demo-1.0.tar.gz</a>', "bad sha256"),
    ],
)
def test_malformed_pages_name_the_project_and_the_cause(content_type: str, body: bytes, cause: str) -> None:
    with pytest.raises(MalformedPage) as caught:
        parse_page("demo", PAGE, content_type, body)
    message = str(caught.value)
    assert message.startswith("project 'demo': malformed index page") and cause in message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["../evil.whl", "a/b.whl", "a\\b.whl", "x\x00.whl", "", "demo..1.tar.gz"])
def test_unsafe_filenames_are_refused(name: str) -> None:
    with pytest.raises(UnsafeFilename, match="project 'demo'"):
        check_safe_filename("demo", name)


def test_distribution_filenames_are_parsed_and_others_ignored() -> None:
    wheel = parse_distribution("Demo_Pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.whl")
    assert wheel is not None and (wheel.name, str(wheel.version), wheel.packagetype) == ("demo-pkg", "1.0", "bdist_wheel")
    sdist = parse_distribution("demo-pkg-2.0rc1.tar.gz")
    assert sdist is not None and (sdist.name, str(sdist.version), sdist.packagetype) == ("demo-pkg", "2.0rc1", "sdist")
    assert parse_distribution("demo-1.0-py2.7.egg") is None
    assert parse_distribution("demo-notaversion-py3-none-any.whl") is None


def test_html_links_resolve_against_a_base_href() -> None:
    body = f'<html><head><base href="https://127.0.0.1:7/pkgs/"></head><a href="demo-1.0.tar.gz#sha256={SHA}">demo-1.0.tar.gz</a>'
    page = parse_page("demo", PAGE, "text/html", body.encode())
    assert page.files[0].url == "https://127.0.0.1:7/pkgs/demo-1.0.tar.gz"
