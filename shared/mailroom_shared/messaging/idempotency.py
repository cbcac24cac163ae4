"""Idempotent consumers: a processed-events table written in the handler's own transaction.

At-least-once delivery plus this table gives exactly-once effects: a redelivered event finds
its (source, id) row and is skipped; of two concurrent deliveries of one event, the second waits
on the first's row lock and then inserts nothing (skipped), or proceeds if the first rolled back.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, String, Table
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mailroom_shared.db import utcnow


def processed_events_table(metadata: MetaData) -> Table:
    return Table(
        "processed_events", metadata,
        Column("source", String(64), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("handler", String(128), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False, default=utcnow),
    )


class ProcessedEvents:
    def __init__(self, table: Table):
        self.table = table

    def claim(self, session: Session, envelope: dict, handler: str) -> bool:
        """True if this handler has not processed the event yet; records it in `session`.

        One round trip: INSERT … ON CONFLICT DO NOTHING (PostgreSQL and SQLite). A concurrent
        delivery of the same event waits on the row lock and then inserts nothing."""
        values = {"source": envelope["source"], "event_id": envelope["id"], "handler": handler,
                  "processed_at": utcnow()}
        dialect = session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        result = session.execute(insert(self.table).values(**values).on_conflict_do_nothing())
        return result.rowcount == 1

    def run_once(self, database, envelope: dict, handler: str, change) -> bool:
        """Run `change(session)` in one transaction with the claim, unless `handler` has already
        processed this event. Returns whether it ran."""
        with database.transaction() as session:
            if not self.claim(session, envelope, handler):
                return False
            change(session)
            return True
