"""Idempotent consumers: a processed-events table written in the handler's own transaction.

At-least-once delivery plus this table gives exactly-once effects: a redelivered event finds
its (source, id) row and is skipped; of two concurrent deliveries of one event, the second waits
on the first's row lock and then inserts nothing (skipped), or proceeds if the first rolled back.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable

from sqlalchemy import Column, DateTime, MetaData, String, Table
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.orm import Session

from mailroom_shared import config
from mailroom_shared.db import conflict_insert, is_postgres, utcnow

log = logging.getLogger(__name__)


def processed_events_table(metadata: MetaData) -> Table:
    return Table(
        "processed_events", metadata,
        Column("source", String(64), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("handler", String(128), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False, default=utcnow),
    )


def _key(envelope: dict, handler: str) -> tuple[str, str, str]:
    return (envelope["source"], envelope["id"], handler)


class ProcessedEvents:
    """`run_once` is what handlers call. Concurrent calls on one database are group-committed:
    while one transaction runs, the calls that arrive meanwhile queue up and then run together
    in the next one (up to `max_batch`, env `MAILROOM_EVENT_BATCH`, default 32; 1 turns it off).
    A busy consumer then pays for one connection checkout, one claim statement and one COMMIT
    (one WAL flush) per batch instead of per event — the per-event share of those was about a
    third of contacts' CPU in `make bench`. Each caller still gets its own outcome, so acks,
    retries and dead-lettering stay per message: if the batch fails, every event in it is run
    again in its own transaction and only the one that fails again fails its caller."""

    def __init__(self, table: Table, max_batch: int | None = None):
        self.table = table
        self.max_batch = max_batch
        self._committers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._committers_lock = threading.Lock()

    def claim(self, session: Session, envelope: dict, handler: str) -> bool:
        """True if this handler has not processed the event yet; records it in `session`.

        One round trip: INSERT … ON CONFLICT DO NOTHING (PostgreSQL and SQLite). A concurrent
        delivery of the same event waits on the row lock and then inserts nothing."""
        values = {"source": envelope["source"], "event_id": envelope["id"], "handler": handler,
                  "processed_at": utcnow()}
        result = session.execute(conflict_insert(session, self.table).values(**values).on_conflict_do_nothing())
        return result.rowcount == 1

    def claim_many(self, session: Session, items: list[tuple[dict, str]]) -> list[bool]:
        """`claim` for several (envelope, handler) pairs: one statement on PostgreSQL. The same
        event twice in one batch runs once (the first)."""
        if not is_postgres(session) or len(items) == 1:
            return [self.claim(session, envelope, handler) for envelope, handler in items]
        now = utcnow()
        rows = {}
        for envelope, handler in items:
            rows.setdefault(_key(envelope, handler), {"source": envelope["source"], "event_id": envelope["id"],
                                                      "handler": handler, "processed_at": now})
        table = self.table
        # executemany (SQLAlchemy's "insertmanyvalues": still one INSERT … VALUES on PostgreSQL): a
        # statement with the rows in .values() has no cache key and was compiled again every batch
        inserted = set(session.execute(
            postgresql_insert(table).on_conflict_do_nothing()
            .returning(table.c.source, table.c.event_id, table.c.handler), list(rows.values())).tuples())
        claimed = []
        for envelope, handler in items:
            key = _key(envelope, handler)
            claimed.append(key in inserted)
            inserted.discard(key)  # a duplicate later in the batch was not claimed by itself
        return claimed

    def run_once(self, database, envelope: dict, handler: str, change: Callable) -> bool:
        """Run `change(session)` in one transaction with the claim, unless `handler` has already
        processed this event. Returns whether it ran. The transaction may be shared with other
        concurrent calls (see the class): `change` must only touch the database (and the outbox)."""
        return self._committer(database).submit(envelope, handler, change)

    def run_alone(self, database, envelope: dict, handler: str, change: Callable) -> bool:
        """`run_once` in a transaction of its own."""
        with database.transaction() as session:
            if not self.claim(session, envelope, handler):
                return False
            change(session)
            return True

    def _committer(self, database) -> _GroupCommit:
        committer = self._committers.get(database)
        if committer is None:
            with self._committers_lock:
                committer = self._committers.get(database)
                if committer is None:
                    size = self.max_batch or config.env_int("MAILROOM_EVENT_BATCH", 32)
                    committer = self._committers[database] = _GroupCommit(self, database, max(1, size))
        return committer


class BatchInterrupted(RuntimeError):
    """The group-committed transaction an event was in never finished (its leader was killed)."""


class _Call:
    __slots__ = ("envelope", "handler", "change", "done", "lead", "ran", "error")

    def __init__(self, envelope: dict, handler: str, change: Callable):
        self.envelope, self.handler, self.change = envelope, handler, change
        self.done = threading.Event()  # green under nameko (eventlet monkey-patches threading)
        self.lead = False
        self.ran: bool = False
        # until its transaction commits: a leader killed mid-batch must not make its followers
        # report success (their messages would be acked unprocessed); they fail and are retried
        self.error: BaseException | None = BatchInterrupted("not processed: its batch was interrupted")


class _GroupCommit:
    """Leader/follower group commit. The first caller to find nobody committing becomes the
    leader: it runs the queued calls (its own first) in one transaction, hands each its outcome,
    and passes the lead to the oldest call still queued. Nobody waits for a timer: a call that
    arrives when the database is idle runs at once, alone."""

    def __init__(self, events: ProcessedEvents, database, max_batch: int):
        self.events, self.database, self.max_batch = events, database, max_batch
        self._lock = threading.Lock()
        self._queue: deque[_Call] = deque()
        self._leading = False

    def submit(self, envelope: dict, handler: str, change: Callable) -> bool:
        call = _Call(envelope, handler, change)
        with self._lock:
            self._queue.append(call)
            lead = not self._leading
            self._leading = True
        if not lead:
            try:
                call.done.wait()
            except BaseException:  # this worker was killed while queued: never strand the others
                self._abandon(call)
                raise
        if call.lead or lead:
            self._lead()
        if call.error is not None:
            raise call.error
        return call.ran

    def _abandon(self, call: _Call) -> None:
        with self._lock:
            if call in self._queue:
                self._queue.remove(call)
            if not call.lead:
                return
            if self._queue:  # it had been promoted: the lead passes on
                successor = self._queue[0]
                successor.lead = True
                successor.done.set()
            else:
                self._leading = False

    def _lead(self) -> None:
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
        try:
            self._run(batch)
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._leading = False
            for call in batch[1:]:  # batch[0] is the leader itself
                call.done.set()

    def _run(self, batch: list[_Call]) -> None:
        events = self.events
        try:
            with self.database.transaction() as session:
                claimed = events.claim_many(session, [(call.envelope, call.handler) for call in batch])
                for call, mine in zip(batch, claimed, strict=True):
                    if mine:
                        call.change(session)
                    call.ran = mine
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            log.info("a batch of %d events failed (%s: %s); running each on its own", len(batch),
                     type(exc).__name__, exc)
            for call in batch:  # isolate the failing one; the others commit as they would have alone
                try:
                    call.ran = events.run_alone(self.database, call.envelope, call.handler, call.change)
                    call.error = None
                except Exception as own:
                    call.ran, call.error = False, own
            return
        for call in batch:  # committed
            call.error = None
