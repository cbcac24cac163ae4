"""unread state per user (read_marks), search indexes (pg_trgm)

Revision ID: 9b3f6d2e8a51
Revises: 5e8a1c3d7f42
Create Date: 2026-12-07 02:15:00

On PostgreSQL the search indexes need the pg_trgm extension. It ships with PostgreSQL (contrib)
and is a trusted extension since PostgreSQL 13: the owner of the database (the migrating role)
may create it without superuser rights. If it cannot be created (not installed, or an older
server and no rights), the indexes are left out with a warning and search still works, unindexed
(a sequential scan over the inbox's conversations and their messages).
"""
import logging

import sqlalchemy as sa
from alembic import op

revision = '9b3f6d2e8a51'
down_revision = '5e8a1c3d7f42'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

# conversations.domain.search's documents, as of this revision (the queries use the same expressions)
CONVERSATION_INDEX_SQL = ("(coalesce(subject, '') || chr(10) || coalesce(contact_email, '') || chr(10) "
                          "|| coalesce(contact_name, '')) gin_trgm_ops")
MESSAGE_INDEX_SQL = ("(coalesce(text, '') || chr(10) || coalesce(sender ->> 'email', '') || chr(10) "
                     "|| coalesce(sender ->> 'name', '')) gin_trgm_ops")


def _trigram_extension() -> bool:
    bind = op.get_bind()
    if bind.scalar(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")):
        return True
    savepoint = bind.begin_nested()
    try:
        bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        savepoint.rollback()
        log.warning("pg_trgm could not be created (%s): search works without its indexes",
                    str(exc.orig).strip().splitlines()[0])
        return False
    savepoint.commit()
    return True


def upgrade() -> None:
    op.create_table('read_marks',
    sa.Column('user_id', sa.String(length=100), nullable=False),
    sa.Column('conversation_id', sa.String(length=36), nullable=False),
    sa.Column('read_up_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('marked_unread', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('marked_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_read_marks_conversation_id_conversations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'conversation_id', name=op.f('pk_read_marks'))
    )
    op.create_index('ix_messages_inbound_created', 'messages', ['conversation_id', 'created_at'], unique=False,
                    postgresql_where=sa.text("direction = 'in'"), sqlite_where=sa.text("direction = 'in'"))
    if op.get_bind().dialect.name == 'postgresql' and _trigram_extension():
        op.create_index('ix_conversations_search_trgm', 'conversations', [sa.text(CONVERSATION_INDEX_SQL)],
                        unique=False, postgresql_using='gin')
        op.create_index('ix_messages_search_trgm', 'messages', [sa.text(MESSAGE_INDEX_SQL)],
                        unique=False, postgresql_using='gin')


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_messages_search_trgm")
    op.execute("DROP INDEX IF EXISTS ix_conversations_search_trgm")
    op.drop_index('ix_messages_inbound_created', table_name='messages',
                  postgresql_where=sa.text("direction = 'in'"), sqlite_where=sa.text("direction = 'in'"))
    op.drop_table('read_marks')
