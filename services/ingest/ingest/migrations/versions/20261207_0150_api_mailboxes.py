"""api mailboxes, mailbox status and lease

IMAP mailboxes added through the API (secrets sealed with INGEST_MAILBOX_SECRET_KEY), and on every
mailbox's cursor row its status (last poll, last success, unreachable since, messages fetched)
and the lease that lets only one ingest replica poll it at a time.

Revision ID: 5b7d2e91c4a8
Revises: 3c1e9a7d2b40
Create Date: 2026-12-07 01:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '5b7d2e91c4a8'
down_revision = '3c1e9a7d2b40'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'api_mailboxes',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column('host', sa.String(length=253), nullable=False),
        sa.Column('port', sa.Integer(), nullable=False),
        sa.Column('tls', sa.String(length=16), nullable=False),
        sa.Column('ca_bundle', sa.Text(), nullable=True),
        sa.Column('folder', sa.String(length=500), nullable=False),
        sa.Column('username', sa.String(length=320), nullable=False),
        sa.Column('auth', sa.String(length=16), nullable=False),
        sa.Column('password_sealed', sa.Text(), nullable=True),
        sa.Column('token_url', sa.String(length=2000), nullable=True),
        sa.Column('client_id', sa.String(length=500), nullable=True),
        sa.Column('scope', sa.String(length=2000), nullable=True),
        sa.Column('client_secret_sealed', sa.Text(), nullable=True),
        sa.Column('refresh_token_sealed', sa.Text(), nullable=True),
        sa.Column('access_token_sealed', sa.Text(), nullable=True),
        sa.Column('access_token_expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_mailboxes')),
    )
    op.create_index(op.f('ix_api_mailboxes_address'), 'api_mailboxes', ['address'], unique=False)
    op.add_column('mailbox_cursors', sa.Column('last_poll_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('mailbox_cursors', sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('mailbox_cursors', sa.Column('unreachable_since', sa.DateTime(timezone=True), nullable=True))
    op.add_column('mailbox_cursors', sa.Column('messages_fetched', sa.BigInteger(), nullable=False,
                                               server_default='0'))
    op.add_column('mailbox_cursors', sa.Column('lease_owner', sa.String(length=200), nullable=True))
    op.add_column('mailbox_cursors', sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('mailbox_cursors') as batch:
        for column in ('lease_expires_at', 'lease_owner', 'messages_fetched', 'unreachable_since',
                       'last_success_at', 'last_poll_at'):
            batch.drop_column(column)
    op.drop_index(op.f('ix_api_mailboxes_address'), table_name='api_mailboxes')
    op.drop_table('api_mailboxes')
