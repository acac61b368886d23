"""root size: how large the upstream's root index was, to tell whether reading it saves requests

Revision ID: hub_0004
Revises: hub_0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'hub_0004'
down_revision = 'hub_0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hub_upstream_roots') as batch:
        batch.add_column(sa.Column('size', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('hub_upstream_roots') as batch:
        batch.drop_column('size')
