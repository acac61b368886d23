"""PEP 691 content negotiation for the simple index.

The server offers three media types, in its own order of preference for
ties: the JSON API, the versioned HTML and plain ``text/html``. A client's
``Accept`` header is parsed with q-values (RFC 9110); the offered type with
the highest q wins, and ``*/*`` or ``application/*`` match as wildcards. No
``Accept`` header means a legacy client: plain HTML. ``?format=`` overrides
the header, as PEP 691 allows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
# Also the preference order for ties.
OFFERED = (JSON_V1, HTML_V1, TEXT_HTML)
LATEST_JSON = "application/vnd.pypi.simple.latest+json"
LATEST_HTML = "application/vnd.pypi.simple.latest+html"
ALIASES = {LATEST_JSON: JSON_V1, LATEST_HTML: HTML_V1}


@dataclass(frozen=True)
class Choice:
    media_type: str

    @property
    def is_json(self) -> bool:
        return self.media_type == JSON_V1

    @property
    def page_name(self) -> str:
        return "index.json" if self.is_json else "index.html"

    @property
    def content_type(self) -> str:
        return self.media_type + ("" if self.is_json else "; charset=utf-8")


def parse_accept(header: str) -> list[tuple[str, float]]:
    """[(media type, q)] from an Accept header; malformed entries are dropped."""
    entries = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        if not media or "/" not in media:
            continue
        q = 1.0
        for param in fields[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                q = min(max(q, 0.0), 1.0)
        entries.append((ALIASES.get(media, media), q))
    return entries


def _quality(offered: str, accepted: list[tuple[str, float]]) -> float:
    """The q of the most specific entry that matches `offered` (-1: none)."""
    best_specificity, best_q = -1, -1.0
    major = offered.split("/", 1)[0]
    for media, q in accepted:
        if media == offered:
            specificity = 2
        elif media == f"{major}/*":
            specificity = 1
        elif media == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best_specificity:
            best_specificity, best_q = specificity, q
    return best_q


@functools.lru_cache(maxsize=512)  # clients send the same few headers on every request
def negotiate(accept: str | None, format_param: str | None = None) -> Choice | None:
    """The media type to serve, or None when nothing offered is acceptable (406)."""
    if format_param:
        # An unescaped `+` in a query string arrives as a space.
        format_param = format_param.strip().replace(" ", "+")
        wanted = ALIASES.get(format_param, format_param)
        return Choice(wanted) if wanted in OFFERED else None
    if not accept or not accept.strip():
        return Choice(TEXT_HTML)
    accepted = parse_accept(accept)
    scored = [(_quality(offered, accepted), -rank, offered) for rank, offered in enumerate(OFFERED)]
    q, _, media = max(scored)
    if q <= 0:
        return None
    # `*/*` alone: a browser or a generic tool; HTML is what it can show.
    if all(m == "*/*" for m, _ in accepted):
        return Choice(TEXT_HTML)
    return Choice(media)
