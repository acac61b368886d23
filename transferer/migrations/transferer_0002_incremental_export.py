"""incremental export: what the site holds, per release and per blob

Revision ID: transferer_0002
Revises: transferer_0001

The last bundle's whole-catalog `site_state` document moves into rows of
export_site_releases / export_site_blobs; releases.updated_at gets the index
the export's delta query walks.
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = 'transferer_0002'
down_revision = 'transferer_0001'
branch_labels = None
depends_on = None

KEY_SEP = "\x1f"
KEY_LENGTH = 128 + 255 + 128 + 2


def upgrade() -> None:
    with op.batch_alter_table('exported_bundles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('watermark', sa.DateTime(timezone=True), nullable=True))
    site_releases = op.create_table('export_site_releases',
    sa.Column('key', sa.String(length=KEY_LENGTH), nullable=False),
    sa.Column('release_id', sa.Integer(), nullable=True),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_export_site_releases'))
    )
    op.create_index(op.f('ix_export_site_releases_release_id'), 'export_site_releases', ['release_id'], unique=False)
    site_blobs = op.create_table('export_site_blobs',
    sa.Column('key', sa.String(length=KEY_LENGTH), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('key', 'sha256', name=op.f('pk_export_site_blobs'))
    )
    op.create_index(op.f('ix_export_site_blobs_sha256'), 'export_site_blobs', ['sha256'], unique=False)
    op.create_index('ix_transferer_releases_updated_at', 'releases', ['updated_at'], unique=False)
    _move_site_state(site_releases, site_blobs)


def _move_site_state(site_releases: sa.Table, site_blobs: sa.Table) -> None:
    conn = op.get_bind()
    raw = conn.execute(sa.text("SELECT site_state FROM exported_bundles ORDER BY seq DESC LIMIT 1")).scalar()
    if raw is None:
        return
    state = json.loads(raw) if isinstance(raw, str) else raw
    ids = {
        KEY_SEP.join((channel, name, version)): release_id
        for release_id, channel, name, version in conn.execute(sa.text(
            "SELECT releases.id, channels.name, releases.name, releases.version"
            " FROM releases JOIN channels ON channels.id = releases.channel_id"))
    }
    # updated_at stays unknown: the first export after this one looks at each such release once.
    rows = [{"key": key, "release_id": ids.get(key), "fingerprint": entry["fp"], "updated_at": None}
            for key, entry in state.items()]
    blobs = [{"key": key, "sha256": sha} for key, entry in state.items() for sha in sorted(set(entry.get("blobs", [])))]
    if rows:
        op.bulk_insert(site_releases, rows)
    if blobs:
        op.bulk_insert(site_blobs, blobs)
    conn.execute(sa.text("UPDATE exported_bundles SET site_state = '{}'"))


def downgrade() -> None:
    op.drop_index('ix_transferer_releases_updated_at', table_name='releases')
    op.drop_index(op.f('ix_export_site_blobs_sha256'), table_name='export_site_blobs')
    op.drop_table('export_site_blobs')
    op.drop_index(op.f('ix_export_site_releases_release_id'), table_name='export_site_releases')
    op.drop_table('export_site_releases')
    with op.batch_alter_table('exported_bundles', schema=None) as batch_op:
        batch_op.drop_column('watermark')
