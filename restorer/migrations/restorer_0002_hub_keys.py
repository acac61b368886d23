"""hub keys: each hub id bound to exactly one trusted key

Revision ID: restorer_0002
Revises: restorer_0001

"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = 'restorer_0002'
down_revision = 'restorer_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hub_keys',
    sa.Column('hub_id', sa.String(length=64), nullable=False),
    sa.Column('key_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('bound_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('bound_by', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('hub_id', name=op.f('pk_hub_keys')),
    sa.UniqueConstraint('key_fingerprint', name=op.f('uq_hub_keys_key_fingerprint'))
    )
    # A site that imported before bindings existed binds each hub to the key its latest import
    # recorded, where that key never spoke for another hub; the rest bind on their next import.
    op.execute(
        "INSERT INTO hub_keys (hub_id, key_fingerprint, bound_at, bound_by) "
        "SELECT b.hub_id, b.key_fingerprint, b.imported_at, 'migration' FROM imported_bundles b "
        "WHERE b.id = (SELECT max(l.id) FROM imported_bundles l WHERE l.hub_id = b.hub_id) "
        "AND (SELECT count(DISTINCT o.hub_id) FROM imported_bundles o WHERE o.key_fingerprint = b.key_fingerprint) = 1"
    )


def downgrade() -> None:
    op.drop_table('hub_keys')
