"""The PyPI adapter: PEP 503/691 indexes, wheel tags, Requires-Dist closure.

Modules, in the order a sync uses them:

- `files`: upstream filenames (hostile input) and what they name;
- `index`: parse PEP 691 JSON and PEP 503 HTML project pages;
- `fetch`: HTTP(S) and file:// access with retries, streaming into blobs;
- `metadata`: core metadata (METADATA / PKG-INFO) and where to read it;
- `targets`: target environments (python x platform) and their wheel tags;
- `closure`: choose releases and the transitive closure of their needs;
- `adapter`: ties these together into a `downloader.base.Selection`;
- `cache`: the tables its caches live in, and their load / save hooks;
- `ecosystem`: `ECOSYSTEM`, what the hub and the vetters see (entry point
  `reservoir.adapters: pypi`).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Loaded on first use: a module of this package (files, schema) imported alone stays light.
    if name == "ECOSYSTEM":
        from downloader.pypi.ecosystem import ECOSYSTEM

        return ECOSYSTEM
    raise AttributeError(name)
