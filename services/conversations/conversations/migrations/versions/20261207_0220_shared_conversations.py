"""shared conversations: one email to several team inboxes

Revision ID: 5e1d2c9a7b30
Revises: 9b3f6d2e8a51
Create Date: 2026-12-07 02:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '5e1d2c9a7b30'
down_revision = '9b3f6d2e8a51'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('conversation_inboxes',
    sa.Column('conversation_id', sa.String(length=36), nullable=False),
    sa.Column('inbox_id', sa.String(length=36), nullable=False),
    sa.Column('intake_id', sa.String(length=64), nullable=True),
    sa.Column('shared_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_conversation_inboxes_conversation_id_conversations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], name=op.f('fk_conversation_inboxes_inbox_id_inboxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('conversation_id', 'inbox_id', name=op.f('pk_conversation_inboxes'))
    )
    op.create_index(op.f('ix_conversation_inboxes_inbox_id'), 'conversation_inboxes', ['inbox_id'], unique=False)
    op.create_index('ix_messages_rfc_message_id', 'messages', ['rfc_message_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_messages_rfc_message_id', table_name='messages')
    op.drop_index(op.f('ix_conversation_inboxes_inbox_id'), table_name='conversation_inboxes')
    op.drop_table('conversation_inboxes')
