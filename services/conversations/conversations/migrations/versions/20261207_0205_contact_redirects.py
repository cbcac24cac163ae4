"""contact redirects: merged and erased contacts (issue #17)

Revision ID: 7d2c5b9e41a3
Revises: c4a7e1d20b14
Create Date: 2026-12-07 02:05:00
"""
from alembic import op
import sqlalchemy as sa


revision = '7d2c5b9e41a3'
down_revision = 'c4a7e1d20b14'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('contact_redirects',
    sa.Column('contact_id', sa.String(length=36), nullable=False),
    sa.Column('survivor_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('contact_id', name=op.f('pk_contact_redirects'))
    )
    op.create_index(op.f('ix_contact_redirects_survivor_id'), 'contact_redirects', ['survivor_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_contact_redirects_survivor_id'), table_name='contact_redirects')
    op.drop_table('contact_redirects')
