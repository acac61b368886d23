"""Database engine, sessions and schema migrations.

SQLite (WAL) in the home by default; PostgreSQL when RESERVOIR_DB_URL (or
[database] url) names one. Tables come from the core and from components:
each component registers its model module under the ``reservoir.models``
entry point group and its Alembic versions folder under
``reservoir.migrations`` (one Alembic branch per component), so
``upgrade()`` brings every installed component's schema to its head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from reservoir.errors import ConfigError
from reservoir.plugins import load_model_modules, migration_locations

if TYPE_CHECKING:
    from alembic.config import Config

# Stable constraint names make migrations portable between SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def version_locations() -> list[Path]:
    """Every installed component's Alembic versions folder, the core's first."""
    return [MIGRATIONS_DIR / "versions", *migration_locations()]


def schema_fingerprint(locations: list[Path]) -> str:
    """A hash of every migration script: it changes when any is added, removed or edited."""
    digest = hashlib.sha256()
    for location in locations:
        for script in sorted(location.glob("*.py")):
            if script.name == "__init__.py":
                continue
            digest.update(f"{location.parent.name}/{script.name}\0".encode())
            digest.update(script.read_bytes())
    return digest.hexdigest()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not pysqlite, decide when transactions begin, so
        # that write_session() can take the write lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))


@dataclass
class Database:
    url: str
    engine: Engine

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def session(self) -> Session:
        return sessionmaker(self.engine, expire_on_commit=False)()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on error."""
        with self.session() as session, session.begin():
            yield session

    @contextmanager
    def write_transaction(self) -> Iterator[Session]:
        """Like transaction(), but holding the database's write lock from the start.

        On SQLite this is BEGIN IMMEDIATE, so read-then-write decisions (who
        gets the last half GPU, which sequence number a bundle takes) cannot
        interleave between processes. On PostgreSQL, callers lock the rows
        they decide on with SELECT ... FOR UPDATE.
        """
        engine = self.engine.execution_options(sqlite_begin="BEGIN IMMEDIATE") if self.is_sqlite else self.engine
        with sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
            yield session

    def alembic_config(self) -> Config:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option("version_locations", ":".join(map(str, version_locations())))
        return cfg

    def pending_heads(self) -> set[str]:
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        script = ScriptDirectory.from_config(self.alembic_config())
        with self.engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
        # alembic_version drops a head that another branch `depends_on`
        # (core_0001 once hub_0001 is applied): whatever the current heads
        # reach, dependencies included, is applied.
        applied = {rev.revision for rev in script.iterate_revisions(tuple(current), "base")} if current else set()
        return set(script.get_heads()) - applied

    def upgrade(self) -> None:
        """Bring every component's schema to its newest revision."""
        load_model_modules()
        fingerprint = schema_fingerprint(version_locations())
        if self._stamped_fingerprint() == fingerprint:
            return
        if self.pending_heads():
            from alembic import command

            cfg = self.alembic_config()
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "heads")
        with self.engine.begin() as conn:
            conn.execute(text("DELETE FROM schema_stamp"))
            conn.execute(text("INSERT INTO schema_stamp (id, fingerprint) VALUES (1, :f)"), {"f": fingerprint})

    def _stamped_fingerprint(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT fingerprint FROM schema_stamp")).scalar()
        except DBAPIError:  # a new database, or one from before the stamp existed
            return None

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(url: str, *, upgrade: bool = True) -> Database:
    """Connect to the database at `url`, migrating it to the current schema."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30})
            _configure_sqlite(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except Exception as exc:  # noqa: BLE001 - any driver error is a config problem here
        raise ConfigError(f"cannot use database {url!r}: {exc}") from exc
    db = Database(url=url, engine=engine)
    if upgrade:
        db.upgrade()
    return db
