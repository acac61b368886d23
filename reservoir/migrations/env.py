"""Alembic environment: runs on the connection reservoir.db hands it."""

from __future__ import annotations

from alembic import context

from reservoir import models as _core_models  # noqa: F401  (registers the core tables)
from reservoir.db import Base
from reservoir.plugins import load_model_modules

load_model_modules()

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through reservoir.db.Database.upgrade()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
