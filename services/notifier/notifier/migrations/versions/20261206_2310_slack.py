"""Slack connections, thread map, posts to make and events received

Revision ID: 8f1c2b6d9e30
Revises: 5e8b0d3a2c47
Create Date: 2026-12-06 23:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '8f1c2b6d9e30'
down_revision = '5e8b0d3a2c47'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('slack_connections',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('inbox_id', sa.String(length=64), nullable=False),
    sa.Column('channel_id', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('notifications', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('bot_token_sealed', sa.Text(), nullable=False),
    sa.Column('signing_secret_sealed', sa.Text(), nullable=False),
    sa.Column('rate_limited_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slack_connections')),
    sa.UniqueConstraint('inbox_id', 'channel_id', name=op.f('uq_slack_connections_inbox_id_channel_id'))
    )
    op.create_index(op.f('ix_slack_connections_channel_id'), 'slack_connections', ['channel_id'], unique=False)
    op.create_table('slack_threads',
    sa.Column('connection_id', sa.String(length=36), nullable=False),
    sa.Column('conversation_id', sa.String(length=64), nullable=False),
    sa.Column('channel_id', sa.String(length=64), nullable=False),
    sa.Column('thread_ts', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['connection_id'], ['slack_connections.id'],
                            name=op.f('fk_slack_threads_connection_id_slack_connections'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('connection_id', 'conversation_id', name=op.f('pk_slack_threads'))
    )
    op.create_index('ix_slack_threads_ts', 'slack_threads', ['channel_id', 'thread_ts'], unique=False)
    op.create_table('slack_posts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('connection_id', sa.String(length=36), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('conversation_id', sa.String(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('in_flight', sa.Boolean(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ts', sa.String(length=32), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('posted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['connection_id'], ['slack_connections.id'],
                            name=op.f('fk_slack_posts_connection_id_slack_connections'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slack_posts')),
    sa.UniqueConstraint('connection_id', 'event_id', name=op.f('uq_slack_posts_connection_id_event_id'))
    )
    op.create_index('ix_slack_posts_due', 'slack_posts', ['state', 'next_attempt_at'], unique=False)
    op.create_index('ix_slack_posts_conversation', 'slack_posts', ['connection_id', 'conversation_id', 'state', 'id'],
                    unique=False)
    op.create_table('slack_events',
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('connection_id', sa.String(length=36), nullable=False),
    sa.Column('event', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('retries_seen', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['slack_connections.id'],
                            name=op.f('fk_slack_events_connection_id_slack_connections'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_slack_events'))
    )
    op.create_index('ix_slack_events_due', 'slack_events', ['state', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_table('slack_events')
    op.drop_table('slack_posts')
    op.drop_table('slack_threads')
    op.drop_table('slack_connections')
