"""schema stamp: lets start-up skip Alembic when the schema is current

Revision ID: core_0002
Revises: core_0001

"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = 'core_0002'
down_revision = 'core_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('schema_stamp',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_schema_stamp'))
    )


def downgrade() -> None:
    op.drop_table('schema_stamp')
