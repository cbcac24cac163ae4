"""Database helpers every service uses: engines, sessions, naming conventions, UTC timestamps.

Each service owns its own database; these helpers never look at another service's tables.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """A datetime read back from the database, with its zone: SQLite drops it (we store UTC)."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def parse_time(value) -> dt.datetime:
    """An event's ISO-8601 time (or a datetime) in UTC — UTC so that ordering works on SQLite too,
    which keeps no offset; now when missing or unreadable."""
    if isinstance(value, dt.datetime):
        return aware(value).astimezone(dt.UTC)
    if value:
        try:
            return aware(dt.datetime.fromisoformat(str(value))).astimezone(dt.UTC)
        except ValueError:
            pass
    return utcnow()


def make_cooperative() -> None:
    """Make psycopg2 yield to other green threads when eventlet is active.

    Without this a slow query blocks every green thread of a nameko service
    (psycogreen); shared/tests/test_cooperative_driver.py proves it.
    """
    try:
        import eventlet.patcher
    except ImportError:  # pragma: no cover - eventlet is a hard dependency
        return
    if eventlet.patcher.is_monkey_patched("socket"):
        from psycogreen.eventlet import patch_psycopg

        patch_psycopg()


def normalise_url(url: str) -> str:
    """`postgresql://` means psycopg2 here (SQLAlchemy 2.1 would pick psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # WAL lets the SMTP process and the service share it
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if url.startswith("postgresql"):
        make_cooperative()
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size)
    ping_when_idle(engine)
    return engine


PING_AFTER_IDLE_S = 10.0


def ping_when_idle(engine: Engine, idle_s: float = PING_AFTER_IDLE_S) -> None:
    """Pessimistic disconnect handling without a round trip per transaction: a pooled connection
    that sat idle for `idle_s` (long enough for a database restart or a proxy's idle timeout to
    have cut it) is checked with `SELECT 1` before use and silently replaced if dead. A busy
    service reuses its connections within milliseconds and never pings; SQLAlchemy's
    `pool_pre_ping` pinged on every checkout (3–9 % of each service's CPU in `make bench`). A
    connection cut while in steady use fails that one transaction (events are retried), and the
    pool then drops all its connections."""

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_connection, record):
        record.info["mailroom_used_at"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record):
        if record is not None:
            record.info["mailroom_used_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy):
        if time.monotonic() - record.info.get("mailroom_used_at", 0.0) < idle_s:
            return
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
        except Exception as exc:
            raise DisconnectionError(f"idle connection is dead: {exc}") from exc
        record.info["mailroom_used_at"] = time.monotonic()


def is_postgres(engine_or_session: Engine | Session) -> bool:
    bind = engine_or_session.get_bind() if isinstance(engine_or_session, Session) else engine_or_session
    return bind.dialect.name == "postgresql"


def conflict_insert(session: Session, table):
    """INSERT with `on_conflict_do_nothing` / `on_conflict_do_update`, in the session's dialect
    (PostgreSQL or SQLite: both have ON CONFLICT)."""
    return (postgresql_insert if is_postgres(session) else sqlite_insert)(table)


class Database:
    """An engine plus a session factory; `transaction()` is the unit of work."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(bind=self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
