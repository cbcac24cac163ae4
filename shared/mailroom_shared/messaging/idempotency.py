"""Idempotent consumers: a processed-events table written in the handler's own transaction.

At-least-once delivery plus this table gives exactly-once effects: a redelivered event finds
its (source, id) row and is skipped; two concurrent deliveries of one event conflict on the
primary key and one of them rolls back and is retried (then skipped).
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, String, Table, select
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
        """True if this handler has not processed the event yet; records it in `session`."""
        key = {"source": envelope["source"], "event_id": envelope["id"], "handler": handler}
        seen = session.execute(
            select(self.table.c.event_id).where(
                self.table.c.source == key["source"], self.table.c.event_id == key["event_id"],
                self.table.c.handler == handler)
        ).first()
        if seen:
            return False
        session.execute(self.table.insert().values(**key, processed_at=utcnow()))
        return True
