from __future__ import annotations

import pytest

from restorer.negotiation import HTML_V1, JSON_V1, TEXT_HTML, negotiate, parse_accept

PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
UV_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PIP_ACCEPT, JSON_V1),
        (UV_ACCEPT, JSON_V1),
        ("text/html", TEXT_HTML),
        (HTML_V1, HTML_V1),
        ("application/vnd.pypi.simple.latest+json", JSON_V1),
        ("application/vnd.pypi.simple.latest+html", HTML_V1),
        ("text/html, application/vnd.pypi.simple.v1+json;q=0.5", TEXT_HTML),
        ("application/vnd.pypi.simple.v1+json;q=0, text/html", TEXT_HTML),
        ("*/*", TEXT_HTML),
        ("application/*", JSON_V1),
        ("text/*;q=0.5, application/vnd.pypi.simple.v1+json;q=0.4", TEXT_HTML),
        (None, TEXT_HTML),
        ("", TEXT_HTML),
    ],
)
def test_negotiation_table(accept: str | None, expected: str) -> None:
    choice = negotiate(accept)
    assert choice is not None and choice.media_type == expected


@pytest.mark.parametrize("accept", ["application/json", "image/png, text/plain", "application/vnd.pypi.simple.v1+json;q=0"])
def test_nothing_acceptable_is_406(accept: str) -> None:
    assert negotiate(accept) is None


def test_format_parameter_overrides_the_header() -> None:
    choice = negotiate("text/html", "application/vnd.pypi.simple.v1+json")
    assert choice is not None and choice.is_json
    assert negotiate("text/html", "application/x-nonsense") is None


def test_malformed_q_values_do_not_crash() -> None:
    assert parse_accept("text/html;q=abc, ,nonsense, application/vnd.pypi.simple.v1+json;q=7") == [
        ("text/html", 0.0),
        (JSON_V1, 1.0),
    ]


def test_json_choice_names_its_page_and_type() -> None:
    choice = negotiate(PIP_ACCEPT)
    assert choice is not None
    assert choice.page_name == "index.json"
    assert choice.content_type == JSON_V1
    html = negotiate("text/html")
    assert html is not None and html.page_name == "index.html" and html.content_type.startswith("text/html")
