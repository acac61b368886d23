"""The APT adapter: signed Release files, Packages indexes, apt's closure, verified `.deb`s.

Modules: `sources` (the host's apt sources), `release` (gpgv, Release and
index checks), `packages` (the Packages parser), `relations` and `closure`
(apt's resolution), `diff`, `options`, `adapter` (a channel's suites into a
`downloader.base.Selection`), `control` (a `.deb`'s DEP-5 copyright),
`schema` (what a bundle may say), and `ecosystem`: `ECOSYSTEM`, what the hub
and the vetters see (entry point `reservoir.adapters: apt`).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Loaded on first use: the pure modules (packages, schema) imported alone stay light.
    if name == "ECOSYSTEM":
        from downloader.apt.ecosystem import ECOSYSTEM

        return ECOSYSTEM
    raise AttributeError(name)
