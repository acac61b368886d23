"""upstream serials: per page and per channel's root index

Revision ID: hub_0002
Revises: hub_0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = 'hub_0002'
down_revision = 'hub_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hub_upstream_pages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('serial', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('listed_serial', sa.BigInteger(), nullable=True))
    op.create_table('hub_upstream_roots',
    sa.Column('channel_id', sa.Integer(), nullable=False),
    sa.Column('etag', sa.Text(), nullable=True),
    sa.Column('last_modified', sa.Text(), nullable=True),
    sa.Column('options_digest', sa.String(length=64), nullable=False),
    sa.Column('serial', sa.BigInteger(), nullable=True),
    sa.Column('fetched_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_hub_upstream_roots_channel_id_channels'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('channel_id', name=op.f('pk_hub_upstream_roots'))
    )


def downgrade() -> None:
    op.drop_table('hub_upstream_roots')
    with op.batch_alter_table('hub_upstream_pages', schema=None) as batch_op:
        batch_op.drop_column('listed_serial')
        batch_op.drop_column('serial')
