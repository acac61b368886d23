"""dirty pages: what each import changed, until a publish takes it

Revision ID: restorer_0003
Revises: restorer_0002

"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = 'restorer_0003'
down_revision = 'restorer_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dirty_pages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('catalog', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('leaf', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dirty_pages'))
    )
    with op.batch_alter_table('dirty_pages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dirty_pages_catalog'), ['catalog'], unique=False)
    # A site that was killed between an import and its publish before this table existed
    # does not know what changed: its next publish rebuilds everything.
    op.execute(
        "INSERT INTO dirty_pages (catalog, kind, leaf) "
        "SELECT catalog, '*', '*' FROM site_generation WHERE published < catalog"
    )


def downgrade() -> None:
    with op.batch_alter_table('dirty_pages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dirty_pages_catalog'))
    op.drop_table('dirty_pages')
