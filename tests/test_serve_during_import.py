"""While a bundle imports and the tree is republished, 50 concurrent clients never see a 404 or a bad hash."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path

import aiohttp

from restorer.importer import import_bundle
from restorer.publish import publish_site
from tests.support.bundles import add_to_hub, make_pair
from tests.support.site import run_server, wheel_named
from transferer.export import export_bundle

JSON = "application/vnd.pypi.simple.v1+json"


async def hammer(base: str, stop: threading.Event, clients: int = 50) -> dict[str, int]:
    tally = {"requests": 0, "errors": 0, "bad_hash": 0}
    failures: list[str] = []

    async def client(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            async with session.get(f"{base}/pypi/simple/", headers={"Accept": JSON}) as r:
                tally["requests"] += 1
                if r.status != 200:
                    failures.append(f"root {r.status}")
                    continue
                projects = [p["name"] for p in (await r.json(content_type=None))["projects"]]
            for project in projects:
                async with session.get(f"{base}/pypi/simple/{project.lower()}/", headers={"Accept": JSON}) as r:
                    tally["requests"] += 1
                    if r.status != 200:
                        failures.append(f"{project} page {r.status}")
                        continue
                    files = (await r.json(content_type=None))["files"]
                for entry in files:
                    url = f"{base}/pypi/simple/{project.lower()}/{entry['url']}"
                    async with session.get(url) as r:
                        tally["requests"] += 1
                        body = await r.read()
                        if r.status != 200:
                            failures.append(f"{entry['filename']} {r.status}")
                        elif hashlib.sha256(body).hexdigest() != entry["hashes"]["sha256"]:
                            tally["bad_hash"] += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    tally["errors"] = len(failures)
    assert not failures, failures[:5]
    return tally


def test_fifty_clients_during_import_and_publish(tmp_path: Path, site_wheels: dict[str, Path]) -> None:
    pair = make_pair(tmp_path)
    add_to_hub(pair.hub, wheel_named(site_wheels, "alpha-1.0"), wheel_named(site_wheels, "beta"))
    import_bundle(pair.site, export_bundle(pair.hub, pair.media).path)  # type: ignore[arg-type]
    add_to_hub(pair.hub, wheel_named(site_wheels, "alpha-2.0"), wheel_named(site_wheels, "gamma"))
    second = export_bundle(pair.hub, pair.media).path
    with run_server(pair.site.home.root, workers=2) as server:
        stop = threading.Event()
        swaps: list[str] = []

        def churn() -> None:
            try:
                import_bundle(pair.site, second)  # type: ignore[arg-type]
                for _ in range(8):
                    swaps.append(publish_site(pair.site)[0].generation.name)
            finally:
                stop.set()

        worker = threading.Thread(target=churn)
        worker.start()
        tally = asyncio.run(hammer(server.url, stop))
        worker.join(timeout=60)
    assert len(swaps) == 8
    assert tally["bad_hash"] == 0 and tally["errors"] == 0
    assert tally["requests"] > 200, tally
    pair.close()


def test_serve_imports_what_lands_in_its_inbox(tmp_path: Path, site_wheels: dict[str, Path]) -> None:
    import shutil
    import time
    import urllib.request

    pair = make_pair(tmp_path)
    add_to_hub(pair.hub, wheel_named(site_wheels, "gamma"))
    bundle = export_bundle(pair.hub, pair.media).path
    assert bundle is not None
    with run_server(pair.site.home.root, "--watch-interval", "1") as server:
        shutil.copytree(bundle, pair.site.home.inbox_dir / bundle.name)
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{server.url}/pypi/simple/gamma/") as response:
                    status = response.status
                    break
            except OSError:
                time.sleep(0.3)
        assert status == 200
        assert (pair.site.home.inbox_dir / "done" / bundle.name).is_dir()
    pair.close()
