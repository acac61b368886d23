"""imported bundles

Revision ID: restorer_0001
Revises: 

"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = 'restorer_0001'
down_revision = None
branch_labels = ('restorer',)
depends_on = 'core_0001'


def upgrade() -> None:
    op.create_table('imported_bundles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('hub_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('base', sa.Integer(), nullable=False),
    sa.Column('full', sa.Boolean(), nullable=False),
    sa.Column('manifest_sha256', sa.String(length=64), nullable=False),
    sa.Column('key_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('releases', sa.Integer(), nullable=False),
    sa.Column('removed', sa.Integer(), nullable=False),
    sa.Column('blobs', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_imported_bundles')),
    sa.UniqueConstraint('hub_id', 'seq', name='uq_imported_bundles_hub_seq')
    )
    with op.batch_alter_table('imported_bundles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_imported_bundles_hub_id'), ['hub_id'], unique=False)
    op.create_table('site_generation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('catalog', sa.Integer(), nullable=False),
    sa.Column('published', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_site_generation'))
    )


def downgrade() -> None:
    op.drop_table('site_generation')
    with op.batch_alter_table('imported_bundles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_imported_bundles_hub_id'))
    op.drop_table('imported_bundles')
