from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from reservoir.blobs import BlobStore
from reservoir.db import Database, open_database
from reservoir.context import AppContext
from reservoir.home import create_home
from reservoir.models import Channel
from tests.support.postgres import PostgresServer, start_postgres
from tests.support.site import add_file
from tests.support.wheels import ProjectSpec, build_wheels


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    base = Path(tempfile.mkdtemp(prefix="reservoir-pg-"))
    base.chmod(0o755)  # the server runs as `postgres` and must reach its data dir
    server = start_postgres(base / "pg")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: the test runs once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    db = open_database(db_url)
    yield db
    db.dispose()


@pytest.fixture
def blob_store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


@pytest.fixture(scope="session")
def site_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("site-wheels")
    specs = [
        ProjectSpec("alpha", "1.0", dependencies=["beta>=1"], extras={"fast": ["gamma"]}),
        ProjectSpec("alpha", "2.0", dependencies=["beta>=1"]),
        ProjectSpec("alpha", "0.9"),
        ProjectSpec("beta", "1.0", requires_python=">=3.8"),
        ProjectSpec("gamma", "1.0"),
        ProjectSpec("Mixed_Case.Name", "1.0"),
    ]
    return {p.name: p for p in build_wheels(specs, out)}


@pytest.fixture
def site(tmp_path: Path, site_wheels: dict[str, Path]) -> Iterator[AppContext]:
    create_home(tmp_path / "site", "site")
    app = AppContext(home_root=tmp_path / "site")
    with app.db.transaction() as s:
        channel = Channel(name="py", kind="pypi", upstream="file:///upstream", options={})
        s.add(channel)
        s.flush()
        for path in site_wheels.values():
            yanked: bool | str = "broken build" if "-0.9-" in path.name else False
            add_file(s, app.blobs, channel, path, yanked=yanked, requires_python=">=3.8" if "beta" in path.name else None)
    yield app
    app.close()
