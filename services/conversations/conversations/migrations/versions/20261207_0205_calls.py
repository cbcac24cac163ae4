"""calls logged on conversations (docs/calls.md); conversations by contact

Revision ID: 5e8a1c3d7f42
Revises: 7d2c5b9e41a3
Create Date: 2026-12-07 02:05:00
"""
from alembic import op
import sqlalchemy as sa


revision = '5e8a1c3d7f42'
down_revision = '7d2c5b9e41a3'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('calls',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('conversation_id', sa.String(length=36), nullable=False),
    sa.Column('inbox_id', sa.String(length=36), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('phone_number', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('duration_seconds', sa.Integer(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('recording_url', sa.Text(), nullable=True),
    sa.Column('logged_by', sa.String(length=100), nullable=False),
    sa.Column('logged_by_email', sa.String(length=320), nullable=True),
    sa.Column('called_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('request_digest', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_calls_conversation_id_conversations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_calls')),
    sa.UniqueConstraint('logged_by', 'idempotency_key', name=op.f('uq_calls_logged_by_idempotency_key'))
    )
    op.create_index('ix_calls_conversation_time', 'calls', ['conversation_id', 'called_at', 'id'], unique=False)
    op.create_index('ix_conversations_contact_id', 'conversations', ['contact_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_conversations_contact_id', table_name='conversations')
    op.drop_index('ix_calls_conversation_time', table_name='calls')
    op.drop_table('calls')
