"""timeline entries of kind call (calls logged in conversations, docs/calls.md)

Revision ID: 7b2d4f9e3a61
Revises: 3c7e91d0a4b2
Create Date: 2026-12-07 02:05:00
"""
from alembic import op
import sqlalchemy as sa


revision = '7b2d4f9e3a61'
down_revision = '3c7e91d0a4b2'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('timeline_entries') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=16), server_default='message', nullable=False))
        batch.add_column(sa.Column('call', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('timeline_entries') as batch:
        batch.drop_column('call')
        batch.drop_column('kind')
