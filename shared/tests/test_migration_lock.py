"""Migrations serialise on a PostgreSQL advisory lock: two concurrent runs both succeed (the second
waits, then finds the schema at head), a run waits while another holds the lock, and the schema
state that readiness reports (empty, behind, current, ahead)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest
from sqlalchemy import create_engine, text

from mailroom_shared.db import normalise_url
from mailroom_shared.migrations import (
    current_revisions,
    expected_heads,
    known_revisions,
    lock_key,
    schema_state,
    upgrade,
)

pytestmark = pytest.mark.integration

ENV_PY = """
from sqlalchemy import MetaData
from mailroom_shared.migrations import run_env
run_env(MetaData())
"""

REVISION = '''
"""{slug}"""
import time
from alembic import op
import sqlalchemy as sa

revision = "{revision}"
down_revision = {down!r}


def upgrade():
    op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True))
    time.sleep({sleep})  # widen the window a concurrent, unlocked migrator would collide in


def downgrade():
    op.drop_table("{table}")
'''


def write_migrations(directory, revisions, sleep=0.0):
    (directory / "versions").mkdir(parents=True)
    (directory / "env.py").write_text(ENV_PY)
    (directory / "script.py.mako").write_text("")
    down = None
    for revision in revisions:
        (directory / "versions" / f"{revision}.py").write_text(REVISION.format(
            slug=revision, revision=revision, down=down, table=f"t_{revision}", sleep=sleep))
        down = revision
    return directory


@pytest.fixture
def database(make_database):
    url = make_database("migrate")
    engine = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    yield url, engine
    engine.dispose()


def run_upgrade_process(migrations, url):
    code = textwrap.dedent(f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO)
        from pathlib import Path
        from mailroom_shared.migrations import upgrade
        upgrade("locktest", Path({str(migrations)!r}), {url!r})
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_concurrent_migrations_both_succeed_one_after_the_other(tmp_path, database):
    url, engine = database
    migrations = write_migrations(tmp_path / "migrations", ["r1", "r2"], sleep=1.0)
    first, second = run_upgrade_process(migrations, url), run_upgrade_process(migrations, url)
    outputs = [process.communicate(timeout=120)[0] for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], "\n".join(outputs)
    assert any("another migration of locktest is running" in output for output in outputs), outputs
    with engine.connect() as connection:
        assert current_revisions(connection) == {"r2"}
        tables = set(connection.scalars(text("SELECT tablename FROM pg_tables WHERE tablename LIKE 't_r%'")))
    assert tables == {"t_r1", "t_r2"}


def test_a_migration_waits_while_another_holds_the_lock(tmp_path, database):
    url, engine = database
    migrations = write_migrations(tmp_path / "migrations", ["r1"])
    done = threading.Event()
    errors = []

    def migrate():
        try:
            upgrade("locktest", migrations, url)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        done.set()

    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": lock_key("locktest")})
        thread = threading.Thread(target=migrate, daemon=True)
        thread.start()
        time.sleep(1.5)
        assert not done.is_set(), "the migration ran while another held the lock"
        with engine.connect() as connection:
            assert current_revisions(connection) == frozenset()
        holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key("locktest")})
    assert done.wait(60) and not errors, errors
    with engine.connect() as connection:
        assert current_revisions(connection) == {"r1"}
        # the lock is released once the run is over
        assert connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": lock_key("locktest")})


def test_each_service_has_its_own_lock():
    keys = {lock_key(name) for name in ("ingest", "contacts", "conversations", "outbound", "notifier")}
    assert len(keys) == 5 and all(-(2**63) <= key < 2**63 for key in keys)


def test_schema_state_as_readiness_sees_it(tmp_path, database):
    url, engine = database
    old = write_migrations(tmp_path / "old", ["r1"])
    new = write_migrations(tmp_path / "new", ["r1", "r2"])
    with engine.connect() as connection:
        assert schema_state(current_revisions(connection), expected_heads(new), known_revisions(new)) == "empty"
    upgrade("locktest", old, url)
    with engine.connect() as connection:
        current = current_revisions(connection)
    assert schema_state(current, expected_heads(new), known_revisions(new)) == "behind"
    assert schema_state(current, expected_heads(old), known_revisions(old)) == "current"
    upgrade("locktest", new, url)
    with engine.connect() as connection:
        current = current_revisions(connection)
    assert schema_state(current, expected_heads(new), known_revisions(new)) == "current"
    # pods of the previous release stay ready while the new one rolls out (expand/contract)
    assert schema_state(current, expected_heads(old), known_revisions(old)) == "ahead"


def test_upgrade_waits_for_a_database_that_is_not_there_yet(tmp_path, monkeypatch, postgres_admin):
    migrations = write_migrations(tmp_path / "migrations", ["r1"])
    url = postgres_admin.admin_url.set(database="mr_later_db").render_as_string(hide_password=False)
    monkeypatch.setenv("MAILROOM_MIGRATE_WAIT_SECONDS", "60")
    created = threading.Timer(2.0, lambda: postgres_admin.engine.connect().execute(
        text('CREATE DATABASE "mr_later_db"')).close())
    try:
        created.start()
        started = time.monotonic()
        upgrade("locktest", migrations, url)
        assert time.monotonic() - started >= 1.5
    finally:
        created.cancel()
        postgres_admin.drop_database(url)
