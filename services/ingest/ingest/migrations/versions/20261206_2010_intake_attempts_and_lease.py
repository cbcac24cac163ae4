"""intake attempts and lease

Each processing attempt is counted before the message is analysed, so a message that crashed or
hung its processor is quarantined after INGEST_MAX_ATTEMPTS instead of being taken first again
forever; `claimed_until` keeps other replicas off a message while it is analysed.

Revision ID: 3c1e9a7d2b40
Revises: 700a3afbcdc9
Create Date: 2026-12-06 20:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '3c1e9a7d2b40'
down_revision = '700a3afbcdc9'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('intake', sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('intake', sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('intake') as batch:
        batch.drop_column('claimed_until')
        batch.drop_column('attempts')
