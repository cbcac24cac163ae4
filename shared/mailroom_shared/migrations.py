"""alembic glue: each service's migrations/env.py is two lines that call `run_env`, and the same
database URL logic serves the service, `make migrate`, the migration Jobs and the tests.

Concurrent runs serialise: on PostgreSQL every run holds a session-level `pg_advisory_lock` (one
key per service) on the connection that migrates, from before alembic reads the current revision
until after it stamped the new one. A second migrator (another Job, a retried pod, a developer's
`mailroom migrate`) waits, then finds the schema at head and does nothing.

A migration Job may start before its database accepts connections (first install: the operator is
still creating the cluster): `MAILROOM_MIGRATE_WAIT_SECONDS` (default 0) makes `upgrade` retry the
first connection that long.

Readiness uses `schema_state` to compare the database with the code's expected head.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError, ProgrammingError

from mailroom_shared import config as mailroom_config
from mailroom_shared.db import make_engine

log = logging.getLogger(__name__)

LOCK_NAMESPACE = "mailroom.migrations"


def alembic_config(service: str, migrations_dir: Path, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", (url or mailroom_config.database_url(service)).replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(hour).2d%%(minute).2d_%%(slug)s")
    cfg.attributes["service"] = service
    return cfg


def lock_key(service: str) -> int:
    """The advisory lock key of a service's migrations (a signed 64-bit number)."""
    digest = hashlib.sha256(f"{LOCK_NAMESPACE}:{service}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def wait_for_database(url: str, seconds: float) -> None:
    """Return once the database accepts a connection; retry for up to `seconds`."""
    deadline = time.monotonic() + seconds
    engine = make_engine(url)
    try:
        delay = 1.0
        while True:
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
                return
            except OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("database not reachable yet (%s); retrying in %gs", str(exc).splitlines()[0], delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
    finally:
        engine.dispose()


def upgrade(service: str, migrations_dir: Path, url: str | None = None, revision: str = "head") -> None:
    url = url or mailroom_config.database_url(service)
    wait = mailroom_config.env_float("MAILROOM_MIGRATE_WAIT_SECONDS", 0.0, minimum=0.0)
    if wait:
        wait_for_database(url, wait)
    command.upgrade(alembic_config(service, migrations_dir, url), revision)


def _acquire(connection: Connection, service: str) -> None:
    key = lock_key(service)
    if connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}):
        return
    log.info("another migration of %s is running; waiting for it to finish", service)
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
    log.info("the other migration of %s finished; continuing", service)


def _release(connection: Connection, service: str) -> None:
    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(service)})


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's migrations/env.py (online mode only: we always have a database)."""
    url = context.config.get_main_option("sqlalchemy.url")
    service = context.config.attributes.get("service") or url
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            postgres = connection.dialect.name == "postgresql"
            if postgres:
                _acquire(connection, service)
                connection.commit()  # the lock is the session's; no transaction stays open around it
            try:
                context.configure(connection=connection, target_metadata=target_metadata,
                                  render_as_batch=url.startswith("sqlite"), compare_type=True)
                with context.begin_transaction():
                    context.run_migrations()
                connection.commit()
            finally:
                if postgres:
                    try:
                        connection.rollback()
                        _release(connection, service)
                        connection.commit()
                    except Exception:  # a broken connection: closing it releases the lock too
                        log.warning("could not release the migration lock of %s; the connection closes", service,
                                    exc_info=True)
    finally:
        engine.dispose()


# --- what readiness checks ---------------------------------------------------------------------


def expected_heads(migrations_dir: Path) -> frozenset[str]:
    """The head revision(s) of a service's migrations: what its code expects."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    return frozenset(ScriptDirectory.from_config(cfg).get_heads())


def known_revisions(migrations_dir: Path) -> frozenset[str]:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    return frozenset(script.revision for script in ScriptDirectory.from_config(cfg).walk_revisions())


def current_revisions(connection: Connection) -> frozenset[str]:
    """The revision(s) stamped in the database; empty when it was never migrated."""
    try:
        rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except (ProgrammingError, OperationalError) as exc:
        # the table does not exist (PostgreSQL's undefined_table, SQLite's "no such table"); any
        # other error (a lost connection) is an error
        if getattr(exc.orig, "pgcode", None) == "42P01" or "no such table: alembic_version" in str(exc.orig):
            connection.rollback()
            return frozenset()
        raise
    return frozenset(rows)


def schema_state(current: frozenset[str], expected: frozenset[str], known: frozenset[str]) -> str:
    """`current` (at the code's head), `ahead` (a newer release migrated it: expand/contract keeps
    this code working, so it stays ready during a rollout), `behind` (its migration Job has not run
    yet) or `empty` (never migrated)."""
    if not current:
        return "empty"
    if current == expected:
        return "current"
    if current - known:
        return "ahead"
    return "behind"


__all__ = ["alembic_config", "current_revisions", "expected_heads", "known_revisions", "lock_key",
           "run_env", "schema_state", "upgrade", "wait_for_database"]
