"""the message search index covers each message's first 4,000 characters of text

Revision ID: 7c4e2a9d1f63
Revises: 5e1d2c9a7b30
Create Date: 2026-12-07 05:30:00

The trigram index on every message's whole text cost PostgreSQL CPU on each stored message in
proportion to its text (docs/benchmarks.md, #16); it now indexes the first 4,000 characters
(conversations.domain.search.MESSAGE_TEXT_SEARCHED), and search reads the same expression. Only
where the old index exists (pg_trgm was available): it is replaced, not added. The rebuild holds
a lock that blocks inserts into messages while it runs (seconds per 100,000 messages; stored mail
waits in the queues meanwhile, nothing is lost), and until the new pods run, the old pods'
searches no longer find their index (slower, still correct).
"""
import sqlalchemy as sa
from alembic import op

revision = '7c4e2a9d1f63'
down_revision = '5e1d2c9a7b30'
branch_labels = None
depends_on = None

# conversations.domain.search's message document, as of this revision and the one before
BOUNDED = ("(substr(coalesce(text, ''), 1, 4000) || chr(10) || coalesce(sender ->> 'email', '') || chr(10) "
           "|| coalesce(sender ->> 'name', '')) gin_trgm_ops")
WHOLE = ("(coalesce(text, '') || chr(10) || coalesce(sender ->> 'email', '') || chr(10) "
         "|| coalesce(sender ->> 'name', '')) gin_trgm_ops")


def _replace(expression: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    if not bind.scalar(sa.text("SELECT 1 FROM pg_indexes WHERE indexname = 'ix_messages_search_trgm'")):
        return  # pg_trgm was not available: search works unindexed, as before
    op.execute("DROP INDEX ix_messages_search_trgm")
    op.create_index('ix_messages_search_trgm', 'messages', [sa.text(expression)], unique=False,
                    postgresql_using='gin')


def upgrade() -> None:
    _replace(BOUNDED)


def downgrade() -> None:
    _replace(WHOLE)
