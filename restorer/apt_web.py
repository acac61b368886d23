"""`/apt/<channel>/...` in `reservoir serve`: the published APT trees as static files (entry point `reservoir.web`).

Every path resolves through the tree's links at the moment it is opened, so
a request sees one generation. Names that start with a dot and the tree's
own folders (`current`, `gen-*`) are never served. Conditional requests
(apt sends If-Modified-Since for InRelease) and Range (a resumed download)
are decided by `restorer.conditional`, as for PyPI files. Indices under
`dists/` may change with each publish and are revalidated; pool files and
by-hash files never change under their name.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from aiohttp import web

from restorer.publish.tree import CURRENT, GENERATION_PREFIX
from restorer.server import answer_file

KIND = "apt"
IMMUTABLE = {"Cache-Control": "max-age=31536000, immutable", "Content-Type": "application/octet-stream"}
REVALIDATE = {"Cache-Control": "max-age=0, must-revalidate", "Content-Type": "application/octet-stream"}
APT_ROOT = web.AppKey("apt_root", Path)


def apt_path(root: Path, tail: str) -> Path | None:
    """The file `tail` names under the APT trees, or None for anything a client may not ask for."""
    parts = tail.split("/")
    if len(parts) < 2 or parts[0] in (CURRENT, "") or parts[0].startswith(GENERATION_PREFIX):
        return None
    if any(not part or part.startswith(".") or "\\" in part or "\0" in part for part in parts):
        return None
    path = root.joinpath(*parts)
    try:
        real = os.path.realpath(path)
    except OSError:
        return None
    if not real.startswith(os.path.realpath(root) + os.sep):
        return None
    return path


async def apt_file(request: web.Request) -> web.StreamResponse:
    path = apt_path(request.app[APT_ROOT], request.match_info["tail"])
    if path is None:
        raise web.HTTPNotFound()
    try:
        st = path.stat()
    except OSError:
        raise web.HTTPNotFound() from None
    if not stat.S_ISREG(st.st_mode):
        raise web.HTTPNotFound()
    changing = "/dists/" in request.match_info["tail"] and "/by-hash/" not in request.match_info["tail"]
    base = REVALIDATE if changing or request.match_info["tail"].endswith("/key.gpg") else IMMUTABLE
    return answer_file(request, path, st, base)


def register(app: web.Application, state: Any) -> None:
    app[APT_ROOT] = Path(state.trees_dir) / KIND
    app.router.add_get("/apt/{tail:.+}", apt_file)
