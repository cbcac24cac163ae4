"""webhook secret rotation: the previous secret keeps signing for a while

Revision ID: 7d2a9c4e1f08
Revises: 3c1f5e0a7b21
Create Date: 2026-12-06 21:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '7d2a9c4e1f08'
down_revision = '3c1f5e0a7b21'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('webhook_subscriptions', sa.Column('previous_secret_sealed', sa.Text(), nullable=True))
    op.add_column('webhook_subscriptions',
                  sa.Column('previous_secret_expires_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('webhook_subscriptions', 'previous_secret_expires_at')
    op.drop_column('webhook_subscriptions', 'previous_secret_sealed')
