"""erased keys: late copies of an erased contact's data are not delivered (issue #17)

Revision ID: 2b7e4f1c9a65
Revises: 8f1c2b6d9e30
Create Date: 2026-12-07 02:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '2b7e4f1c9a65'
down_revision = '8f1c2b6d9e30'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('erased_keys',
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('fingerprint', name=op.f('pk_erased_keys'))
    )


def downgrade() -> None:
    op.drop_table('erased_keys')
