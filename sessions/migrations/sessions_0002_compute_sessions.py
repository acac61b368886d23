"""compute sessions and the uids their users run as

Revision ID: sessions_0002
Revises: sessions_0001
Create Date: 2026-12-02 17:50:00
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = 'sessions_0002'
down_revision = 'sessions_0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('compute_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('image', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('command', sa.JSON(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('queued', 'starting', 'running', 'ended', 'removed', name='compute_session_state', native_enum=False, length=16), nullable=False),
    sa.Column('node', sa.String(length=255), nullable=True),
    sa.Column('container_id', sa.String(length=128), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('end_reason', sa.Text(), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('usage', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_active_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('idle_warned_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['sched_requests.id'], name=op.f('fk_compute_sessions_request_id_sched_requests')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_compute_sessions'))
    )
    with op.batch_alter_table('compute_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_compute_sessions_request_id'), ['request_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_compute_sessions_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_compute_sessions_user'), ['user'], unique=False)

    op.create_table('session_users',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('uid', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_session_users')),
    sa.UniqueConstraint('uid', name=op.f('uq_session_users_uid'))
    )


def downgrade() -> None:
    op.drop_table('session_users')
    with op.batch_alter_table('compute_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_compute_sessions_user'))
        batch_op.drop_index(batch_op.f('ix_compute_sessions_state'))
        batch_op.drop_index(batch_op.f('ix_compute_sessions_request_id'))
    op.drop_table('compute_sessions')
