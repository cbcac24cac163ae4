"""suppression list and per-recipient bounces

`suppressions`: the addresses an inbox does not send to after a hard bounce, until a member lifts
it (one row per inbox and address; lifting keeps the row). `emails.bounced_recipients`: which
recipients DSNs returned the email for (an email is `bounced` only once all of them have).

Revision ID: 8c3f1a6e2b47
Revises: 5b0e7c2d9a14
Create Date: 2026-12-06 23:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '8c3f1a6e2b47'
down_revision = '5b0e7c2d9a14'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'suppressions',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('inbox_id', sa.String(length=36), nullable=False),
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column('source', sa.String(length=8), nullable=False),
        sa.Column('status', sa.String(length=40), nullable=True),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('email_id', sa.String(length=36), nullable=True),
        sa.Column('bounce_intake_id', sa.String(length=64), nullable=True),
        sa.Column('bounces', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_bounced_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('lifted_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('lifted_by', sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_suppressions')),
        sa.UniqueConstraint('inbox_id', 'address', name=op.f('uq_suppressions_inbox_id_address')),
    )
    op.add_column('emails', sa.Column('bounced_recipients', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('emails') as batch:
        batch.drop_column('bounced_recipients')
    op.drop_table('suppressions')
