from __future__ import annotations

from sqlalchemy import inspect, select, text

from reservoir.db import Database, open_database
from reservoir.models import Artifact, ArtifactState, Channel, Gate, Release


def test_migrations_create_the_catalog(database: Database) -> None:
    tables = set(inspect(database.engine).get_table_names())
    assert {"channels", "releases", "artifacts", "snapshots", "sync_runs", "alembic_version"} <= tables
    assert database.pending_heads() == set()


def test_upgrade_is_idempotent(db_url: str) -> None:
    first = open_database(db_url)
    first.dispose()
    second = open_database(db_url)
    assert second.pending_heads() == set()
    second.dispose()


def test_catalog_round_trip(database: Database) -> None:
    with database.transaction() as s:
        channel = Channel(name="py", kind="pypi", upstream="file:///nowhere", options={"packages": ["a"]})
        release = Release(channel=channel, name="a", display_name="A", version="1.0", meta={"requires_dist": []})
        release.artifacts.append(Artifact(filename="a-1.0-py3-none-any.whl", sha256="0" * 64, size=3))
        s.add(channel)
    with database.session() as s:
        release = s.scalars(select(Release)).one()
        assert release.gate is Gate.ALLOWED
        assert release.artifacts[0].state is ArtifactState.PENDING
        assert release.channel.options == {"packages": ["a"]}


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = open_database(f"sqlite:///{tmp_path / 'wal.db'}")
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    db.dispose()
