"""The site's shared package layer: the lower layer of every user's overlay.

Built inside a container of the session image, with that image's own pip and
Python, as `pip install --user` with PYTHONUSERBASE at the new layer: the
layer then has exactly the layout a user's own installs get (lib/pythonX.Y/
site-packages, bin/), so the overlay merges the two. A new layer is a new
folder; `current` is switched to it atomically and sessions started from then
on see it (running ones keep theirs).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from reservoir.errors import ReservoirError
from sessions.backend import SITE_LABEL, Backend, Bind, ContainerSpec

LAYER_TARGET = "/layer"


def build_layer(backend: Backend, config: object, image: str, packages: list[str], index_url: str) -> Path:
    layer_dir: Path = config.layer_dir  # type: ignore[attr-defined]
    site_id: str = config.site_id  # type: ignore[attr-defined]
    layer_dir.mkdir(parents=True, exist_ok=True)
    target = layer_dir / f"gen-{time.strftime('%Y%m%d%H%M%S')}"
    target.mkdir()
    target.chmod(0o755)
    spec = ContainerSpec(
        name=f"reservoir-{site_id[:8]}-layer-{target.name}",
        image=image,
        command=("python3", "-m", "pip", "install", "--user", "--no-cache-dir", "--break-system-packages",
                 "--index-url", index_url, *packages),
        user="0:0",
        env={"PYTHONUSERBASE": LAYER_TARGET, "HOME": "/tmp", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        labels={SITE_LABEL: f"{site_id}-layer"},
        working_dir="/tmp",
        nano_cpus=0,
        mem_limit_bytes=0,
        binds=(Bind(str(target), LAYER_TARGET, read_only=False),),
    )
    container_id = backend.create(spec)
    try:
        backend.start(container_id)
        deadline = time.monotonic() + 1800
        while (state := backend.state(container_id)) is not None and state.running and time.monotonic() < deadline:
            time.sleep(0.5)
        output = b"".join(backend.logs(container_id)).decode(errors="replace")
    finally:
        backend.remove(container_id)
    if state is None or state.running or state.exit_code != 0:
        raise ReservoirError(
            f"the layer build failed: {output.strip().splitlines()[-1] if output.strip() else 'no output'}",
            hint="check the package names and --index-url",
        )
    link = layer_dir / "current.new"
    link.unlink(missing_ok=True)
    link.symlink_to(target.name)
    os.replace(link, layer_dir / "current")
    return target
