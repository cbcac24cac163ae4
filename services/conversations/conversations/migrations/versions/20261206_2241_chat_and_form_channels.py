"""chat and form channels

Revision ID: c4a7e1d20b14
Revises: fc8ed11e2ec0
Create Date: 2026-12-06 22:41:16.466416
"""
from alembic import op
import sqlalchemy as sa


revision = 'c4a7e1d20b14'
down_revision = 'fc8ed11e2ec0'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('connector_channels',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('inbox_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=8), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('webhook_url', sa.Text(), nullable=True),
    sa.Column('secret_sealed', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inbox_id'], ['inboxes.id'], name=op.f('fk_connector_channels_inbox_id_inboxes'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connector_channels'))
    )
    op.create_index(op.f('ix_connector_channels_inbox_id'), 'connector_channels', ['inbox_id'], unique=False)
    op.create_table('chat_threads',
    sa.Column('connector_channel_id', sa.String(length=36), nullable=False),
    sa.Column('external_thread_id', sa.String(length=200), nullable=False),
    sa.Column('conversation_id', sa.String(length=36), nullable=False),
    sa.ForeignKeyConstraint(['connector_channel_id'], ['connector_channels.id'], name=op.f('fk_chat_threads_connector_channel_id_connector_channels'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_chat_threads_conversation_id_conversations')),
    sa.PrimaryKeyConstraint('connector_channel_id', 'external_thread_id', name=op.f('pk_chat_threads'))
    )
    op.create_table('channel_attachments',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('message_id', sa.String(length=36), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=127), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_channel_attachments_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_channel_attachments'))
    )
    op.create_index(op.f('ix_channel_attachments_message_id'), 'channel_attachments', ['message_id'], unique=False)
    op.add_column('conversations', sa.Column('channel_type', sa.String(length=8), server_default='email', nullable=False))
    op.add_column('conversations', sa.Column('channel_kind', sa.String(length=16), nullable=True))
    op.add_column('conversations', sa.Column('connector_channel_id', sa.String(length=36), nullable=True))
    op.add_column('conversations', sa.Column('external_thread_id', sa.String(length=200), nullable=True))
    # batch: SQLite (the embedded default) cannot add a unique constraint in place
    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('connector_channel_id', sa.String(length=36), nullable=True))
        batch.add_column(sa.Column('external_message_id', sa.String(length=200), nullable=True))
        batch.create_unique_constraint(batch.f('uq_messages_connector_channel_id_external_message_id'),
                                       ['connector_channel_id', 'external_message_id'])


def downgrade() -> None:
    with op.batch_alter_table('messages') as batch:
        batch.drop_constraint(batch.f('uq_messages_connector_channel_id_external_message_id'), type_='unique')
        batch.drop_column('external_message_id')
        batch.drop_column('connector_channel_id')
    op.drop_column('conversations', 'external_thread_id')
    op.drop_column('conversations', 'connector_channel_id')
    op.drop_column('conversations', 'channel_kind')
    op.drop_column('conversations', 'channel_type')
    op.drop_index(op.f('ix_channel_attachments_message_id'), table_name='channel_attachments')
    op.drop_table('channel_attachments')
    op.drop_table('chat_threads')
    op.drop_index(op.f('ix_connector_channels_inbox_id'), table_name='connector_channels')
    op.drop_table('connector_channels')
