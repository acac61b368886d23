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


def test_current_schema_is_recognised_without_alembic(db_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    open_database(db_url).dispose()

    def must_not_run(self: Database) -> set[str]:
        raise AssertionError("a current schema must not reach Alembic")

    monkeypatch.setattr(Database, "pending_heads", must_not_run)
    open_database(db_url).dispose()


def test_a_new_migration_script_is_applied(db_url: str, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import reservoir.db as db_module

    open_database(db_url).dispose()
    extra = tmp_path / "extra_versions"
    extra.mkdir()
    (extra / "extra_0001_marker.py").write_text(
        "from alembic import op\n"
        "import sqlalchemy as sa\n"
        "revision = 'extra_0001'\n"
        "down_revision = None\n"
        "branch_labels = ('extra',)\n"
        "depends_on = 'core_0002'\n"
        "def upgrade():\n"
        "    op.create_table('extra_marker', sa.Column('id', sa.Integer(), primary_key=True))\n"
        "def downgrade():\n"
        "    op.drop_table('extra_marker')\n"
    )
    installed = db_module.version_locations()
    monkeypatch.setattr(db_module, "version_locations", lambda: [*installed, extra])
    database = open_database(db_url)
    assert "extra_marker" in inspect(database.engine).get_table_names()
    assert database.pending_heads() == set()
    database.dispose()
