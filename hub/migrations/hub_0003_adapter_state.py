"""adapter state: per-channel key/value JSON for any ecosystem's caches and cursor

Revision ID: hub_0003
Revises: hub_0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'hub_0003'
down_revision = 'hub_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hub_adapter_state',
    sa.Column('channel_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('value', sa.JSON(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_hub_adapter_state_channel_id_channels'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('channel_id', 'key', name=op.f('pk_hub_adapter_state'))
    )


def downgrade() -> None:
    op.drop_table('hub_adapter_state')
