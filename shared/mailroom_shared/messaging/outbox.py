"""Transactional outbox: an event is written in the same transaction as the state change it
describes, and a relay publishes it afterwards with publisher confirms and mandatory routing,
marking it published only after the broker confirmed it. A crash between the two republishes
(at-least-once); consumers de-duplicate on the envelope's `source` + `id`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    cast,
    select,
    update,
)
from sqlalchemy.orm import Session

from mailroom_shared.db import Database, is_postgres, utcnow
from mailroom_shared.events.catalogue import spec_for
from mailroom_shared.events.envelope import build_envelope

log = logging.getLogger(__name__)


def outbox_table(metadata: MetaData) -> Table:
    table = Table(
        "outbox", metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("event_type", String(64), nullable=False),
        Column("envelope", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Column("attempts", Integer, nullable=False, default=0),
        Column("last_error", Text, nullable=True),
    )
    Index("ix_outbox_pending", table.c.published_at, table.c.id)
    return table


class Outbox:
    """Records events inside the caller's transaction."""

    def __init__(self, table: Table, publishes=None):
        self.table = table
        self.publishes = dict(publishes or {})  # event name → the version this producer publishes

    def record(self, session: Session, event_type: str, subject: str, data: dict) -> dict:
        return self.record_many(session, [(event_type, subject, data)])[0]

    def record_many(self, session: Session, events: list[tuple[str, str, dict]]) -> list[dict]:
        """Several (event_type, subject, data) in one INSERT, published in this order."""
        envelopes = [build_envelope(event_type, subject, data) for event_type, subject, data in events]
        self.record_envelopes(session, [(event_type, envelope)
                                        for (event_type, _s, _d), envelope in zip(events, envelopes, strict=True)])
        return envelopes

    def record_envelopes(self, session: Session, envelopes: list[tuple[str, dict]]) -> None:
        """(event_type, envelope from build_envelope) pairs in one INSERT, published in this order."""
        if envelopes:
            now = utcnow()
            session.execute(self.table.insert().values([
                {"event_id": envelope["id"], "event_type": event_type, "envelope": envelope, "created_at": now,
                 "attempts": 0} for event_type, envelope in envelopes]))


@dataclass(frozen=True)
class PendingEvent:
    """An outbox row to publish. `body` is the envelope's JSON exactly as stored: the relay sends
    those bytes as they are, instead of parsing 10–200 KB of JSON and serialising it again."""

    event_id: str
    event_type: str
    body: str


# a batch of (event, exchange, routing_key), in order -> (how many of the first ones the broker
# confirmed, the error that stopped the rest or None)
PublishBatch = Callable[[list[tuple[PendingEvent, str, str]]], tuple[int, Exception | None]]


class OutboxRelay:
    """Publishes pending outbox rows in order. Several relays may run: on PostgreSQL each batch
    is claimed with FOR UPDATE SKIP LOCKED; SQLite is single-writer anyway."""

    def __init__(self, database: Database, table: Table, publish_batch: PublishBatch, batch_size: int = 200):
        self.database = database
        self.table = table
        self.publish_batch = publish_batch
        self.batch_size = batch_size
        self.last_failed = False

    def relay_once(self) -> int:
        """Publish one batch; returns how many were published. Stops at the first failure so
        that events keep their order; the failed row is retried on the next call."""
        published = 0
        self.last_failed = False
        with self.database.transaction() as session:
            query = (select(self.table.c.id, self.table.c.event_id, self.table.c.event_type,
                            cast(self.table.c.envelope, Text).label("body"))
                     .where(self.table.c.published_at.is_(None))
                     .order_by(self.table.c.id).limit(self.batch_size))
            if is_postgres(session):
                query = query.with_for_update(skip_locked=True)
            rows = session.execute(query).all()
            items = []
            for row in rows:
                spec = spec_for(row.event_type)
                items.append((PendingEvent(row.event_id, row.event_type, row.body), spec.exchange, spec.name))
            done, error = self.publish_batch(items) if items else (0, None)
            confirmed = [row.id for row in rows[:done]]
            if error is not None:  # broker down, unroutable: keep the row, try later
                failed = rows[done]
                log.warning("outbox: publishing %s %s failed: %s", failed.event_type, failed.id, error)
                session.execute(update(self.table).where(self.table.c.id == failed.id).values(
                    attempts=self.table.c.attempts + 1, last_error=str(error)[:2000]))
                self.last_failed = True
            if confirmed:
                # One statement for the batch (was one per row), in the same transaction as before:
                # the rows stay locked until it commits, and a crash before the commit republishes
                # them (at-least-once), exactly as with per-row updates.
                session.execute(update(self.table).where(self.table.c.id.in_(confirmed)).values(
                    published_at=utcnow(), attempts=self.table.c.attempts + 1, last_error=None))
                published = len(confirmed)
        return published

    def pending_count(self) -> int:
        from sqlalchemy import func

        with self.database.transaction() as session:
            return session.execute(
                select(func.count()).select_from(self.table).where(self.table.c.published_at.is_(None))
            ).scalar_one()
