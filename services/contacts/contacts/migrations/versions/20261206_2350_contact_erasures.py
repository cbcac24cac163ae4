"""contact erasures (GDPR art. 17) and their reports

Revision ID: 3c7e91d0a4b2
Revises: 9d3e5a7c1b20
Create Date: 2026-12-06 23:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '3c7e91d0a4b2'
down_revision = '9d3e5a7c1b20'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('contact_erasures',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('contact_id', sa.String(length=36), nullable=False),
    sa.Column('requested_by', sa.String(length=100), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_erasures'))
    )
    op.create_index(op.f('ix_contact_erasures_contact_id'), 'contact_erasures', ['contact_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_contact_erasures_contact_id'), table_name='contact_erasures')
    op.drop_table('contact_erasures')
