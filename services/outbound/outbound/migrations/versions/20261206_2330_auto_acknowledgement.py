"""automatic acknowledgement per inbox

`auto_acknowledgements`: an inbox's acknowledgement of new conversations (off unless enabled) and
its template; `auto_acknowledged`: when the inbox last acknowledged a sender (once per period).

Revision ID: 3d9b5e0c7a21
Revises: 8c3f1a6e2b47
Create Date: 2026-12-06 23:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '3d9b5e0c7a21'
down_revision = '8c3f1a6e2b47'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'auto_acknowledgements',
        sa.Column('inbox_id', sa.String(length=36), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('subject', sa.Text(), nullable=True),
        sa.Column('html', sa.Text(), nullable=True),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('period_hours', sa.Integer(), nullable=False),
        sa.Column('updated_by', sa.String(length=200), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('inbox_id', name=op.f('pk_auto_acknowledgements')),
    )
    op.create_table(
        'auto_acknowledged',
        sa.Column('inbox_id', sa.String(length=36), nullable=False),
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column('last_sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_email_id', sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint('inbox_id', 'address', name=op.f('pk_auto_acknowledged')),
    )


def downgrade() -> None:
    op.drop_table('auto_acknowledged')
    op.drop_table('auto_acknowledgements')
