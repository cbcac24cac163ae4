"""webhook sequence numbers per subscription and conversation

Revision ID: 5e8b0d3a2c47
Revises: 7d2a9c4e1f08
Create Date: 2026-12-06 23:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '5e8b0d3a2c47'
down_revision = '7d2a9c4e1f08'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('webhook_deliveries', sa.Column('conversation_id', sa.String(length=64), nullable=True))
    op.add_column('webhook_deliveries', sa.Column('sequence', sa.Integer(), nullable=True))
    op.create_table('webhook_sequences',
    sa.Column('subscription_id', sa.String(length=36), nullable=False),
    sa.Column('conversation_id', sa.String(length=64), nullable=False),
    sa.Column('last_sequence', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['subscription_id'], ['webhook_subscriptions.id'],
                            name=op.f('fk_webhook_sequences_subscription_id_webhook_subscriptions'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('subscription_id', 'conversation_id', name=op.f('pk_webhook_sequences'))
    )


def downgrade() -> None:
    op.drop_table('webhook_sequences')
    op.drop_column('webhook_deliveries', 'sequence')
    op.drop_column('webhook_deliveries', 'conversation_id')
