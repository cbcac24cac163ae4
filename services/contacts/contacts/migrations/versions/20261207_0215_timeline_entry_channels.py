"""timeline entries name every inbox an email reached

Revision ID: 4f8a2e6c9d17
Revises: 7b2d4f9e3a61
Create Date: 2026-12-07 02:15:00
"""
from alembic import op
import sqlalchemy as sa


revision = '4f8a2e6c9d17'
down_revision = '7b2d4f9e3a61'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('timeline_entry_channels',
    sa.Column('entry_id', sa.String(length=36), nullable=False),
    sa.Column('channel_address', sa.String(length=320), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['timeline_entries.id'], name=op.f('fk_timeline_entry_channels_entry_id_timeline_entries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('entry_id', 'channel_address', name=op.f('pk_timeline_entry_channels'))
    )
    op.create_index(op.f('ix_timeline_entry_channels_channel_address'), 'timeline_entry_channels', ['channel_address'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_timeline_entry_channels_channel_address'), table_name='timeline_entry_channels')
    op.drop_table('timeline_entry_channels')
