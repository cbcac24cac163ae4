"""template and snippet owner scope

Templates and snippets get an owner scope (outbound/domain/scopes.py): `account` (every signed-in
user sees it, super admins manage it), `inbox` (that inbox's viewers see it, its members manage
it) or `personal` (its owner only). Existing rows stay account-wide (server default). A snippet's
shortcut is unique within its owner's namespace (`owner_key`: the account, an inbox or a user)
instead of across the whole account, so two users may each have a personal `thx`.

Revision ID: 5b0e7c2d9a14
Revises: d721c8bf8769
Create Date: 2026-12-14 12:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '5b0e7c2d9a14'
down_revision = 'd721c8bf8769'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('templates', sa.Column('scope', sa.String(length=16), server_default='account', nullable=False))
    op.add_column('templates', sa.Column('owner_user_id', sa.String(length=200), nullable=True))
    op.create_index(op.f('ix_templates_owner_user_id'), 'templates', ['owner_user_id'], unique=False)
    # batch: SQLite (the embedded default) cannot drop a unique constraint in place
    with op.batch_alter_table('snippets') as batch:
        batch.add_column(sa.Column('scope', sa.String(length=16), server_default='account', nullable=False))
        batch.add_column(sa.Column('owner_user_id', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('owner_key', sa.String(length=220), server_default='account', nullable=False))
        batch.drop_constraint(batch.f('uq_snippets_shortcut'), type_='unique')
        batch.create_unique_constraint(batch.f('uq_snippets_owner_key_shortcut'), ['owner_key', 'shortcut'])
        batch.create_index(batch.f('ix_snippets_owner_user_id'), ['owner_user_id'], unique=False)


def downgrade() -> None:
    # a shortcut used in two namespaces cannot be unique account-wide again: the oldest snippet keeps it
    op.execute(sa.text(
        "UPDATE snippets SET shortcut = NULL WHERE shortcut IS NOT NULL AND EXISTS ("
        "SELECT 1 FROM snippets AS older WHERE older.shortcut = snippets.shortcut AND "
        "(older.created_at < snippets.created_at OR (older.created_at = snippets.created_at AND older.id < snippets.id)))"))
    with op.batch_alter_table('snippets') as batch:
        batch.drop_index(batch.f('ix_snippets_owner_user_id'))
        batch.drop_constraint(batch.f('uq_snippets_owner_key_shortcut'), type_='unique')
        batch.create_unique_constraint(batch.f('uq_snippets_shortcut'), ['shortcut'])
        batch.drop_column('owner_key')
        batch.drop_column('owner_user_id')
        batch.drop_column('scope')
    op.drop_index(op.f('ix_templates_owner_user_id'), table_name='templates')
    with op.batch_alter_table('templates') as batch:
        batch.drop_column('owner_user_id')
        batch.drop_column('scope')
