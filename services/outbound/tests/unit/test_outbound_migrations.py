"""The owner-scope migration on an SQLite file (the embedded default; PostgreSQL is covered by
tests/test_migrations.py): templates and snippets that existed before stay account-wide with
their shortcuts, and the downgrade brings back account-wide unique shortcuts."""

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from mailroom_shared.migrations import alembic_config, upgrade

MIGRATIONS = Path(__file__).resolve().parents[2] / "outbound" / "migrations"
BEFORE = "d721c8bf8769"  # the initial schema


def test_existing_templates_and_snippets_stay_account_wide(tmp_path):
    url = f"sqlite:///{tmp_path / 'outbound.db'}"
    upgrade("outbound", MIGRATIONS, url, BEFORE)
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO templates (id, name, inbox_id, text, created_at, updated_at) VALUES "
                "('t1', 'Welcome', NULL, 'hi', '2026-01-01', '2026-01-01'), "
                "('t2', 'Billing', 'inbox-1', 'b', '2026-01-01', '2026-01-01')"))
            connection.execute(text(
                "INSERT INTO snippets (id, name, shortcut, text, created_at, updated_at) VALUES "
                "('s1', 'Thanks', 'thx', 'Thanks!', '2026-01-01', '2026-01-01')"))
        upgrade("outbound", MIGRATIONS, url)
        with engine.begin() as connection:
            assert connection.execute(text("SELECT id, scope, inbox_id, owner_user_id FROM templates ORDER BY id")) \
                .all() == [("t1", "account", None, None), ("t2", "account", "inbox-1", None)]
            assert connection.execute(text("SELECT scope, owner_key, shortcut FROM snippets")).all() == [
                ("account", "account", "thx")]
            connection.execute(text(
                "INSERT INTO snippets (id, name, shortcut, text, scope, owner_user_id, owner_key, created_at, "
                "updated_at) VALUES ('a0', 'Mine', 'thx', 'x', 'personal', 'u1', 'user:u1', '2026-01-02', "
                "'2026-01-02')"))
        command.downgrade(alembic_config("outbound", MIGRATIONS, url), BEFORE)
        with engine.begin() as connection:  # the older one keeps the shortcut, the later one loses it
            assert connection.execute(text("SELECT id, shortcut FROM snippets ORDER BY id")).all() == [
                ("a0", None), ("s1", "thx")]
    finally:
        engine.dispose()
