"""Transactional outbox: an event is written in the same transaction as the state change it
describes, and a relay publishes it afterwards with publisher confirms and mandatory routing,
marking it published only after the broker confirmed it. A crash between the two republishes
(at-least-once); consumers de-duplicate on the envelope's `source` + `id`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from json.decoder import scanstring

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
    event,
    select,
    update,
)
from sqlalchemy.orm import Session

from mailroom_shared.db import Database, is_postgres, utcnow
from mailroom_shared.events.catalogue import exchange_of, spec_for, spec_for_type, versions
from mailroom_shared.events.envelope import InvalidEvent, build_envelope

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


class UndeclaredEvent(LookupError):
    """A producer recorded an event, or a version of it, that it does not declare in `publishes`."""


class Outbox:
    """Records events inside the caller's transaction, at the version the producer publishes.

    `publishes` maps every event name the producer records to the version it publishes
    (`{"contact_created": 1, ...}`); recording anything else raises UndeclaredEvent. Without it
    (None: old callers, tests) an event is recorded at its only version, and an event with
    several versions raises VersionRequired: it must be declared."""

    def __init__(self, table: Table, publishes: Mapping[str, int] | None = None):
        self.table = table
        self.publishes = None if publishes is None else dict(publishes)
        for name, version in (self.publishes or {}).items():
            if not isinstance(version, int) or isinstance(version, bool):
                raise TypeError(f"publishes[{name!r}] must be a version number, not {version!r}")
            spec_for(name, version)  # KeyError at once for an event or version the catalogue lacks

    def version_of(self, event_type: str) -> int:
        """The version of `event_type` (an event name) this producer publishes."""
        if self.publishes is None:
            return spec_for(event_type).version
        try:
            return self.publishes[event_type]
        except KeyError:
            known = versions(event_type)
            hint = f"publishes={{{event_type!r}: {known[-1]}}}" if known else "first add it to the catalogue"
            raise UndeclaredEvent(f"this producer does not declare {event_type!r} in its publishes "
                                  f"({', '.join(sorted(self.publishes)) or 'none'}): {hint}") from None

    def envelope(self, event_type: str, subject: str, data: dict, *, event_id: str | None = None,
                 traceparent: str | None = None) -> dict:
        """A validated envelope of `event_type` at the version this producer publishes, for
        record_envelopes (built outside the transaction, recorded later). Its `traceparent`
        continues the current trace unless given (mailroom_shared.events.tracing)."""
        return build_envelope(event_type, subject, data, version=self.version_of(event_type), event_id=event_id,
                              traceparent=traceparent)

    def record(self, session: Session, event_type: str, subject: str, data: dict) -> dict:
        return self.record_many(session, [(event_type, subject, data)])[0]

    def record_many(self, session: Session, events: list[tuple[str, str, dict]]) -> list[dict]:
        """Several (event_type, subject, data) in one INSERT, published in this order."""
        envelopes = [self.envelope(event_type, subject, data) for event_type, subject, data in events]
        self._insert(session, [(event_type, envelope)
                               for (event_type, _s, _d), envelope in zip(events, envelopes, strict=True)])
        return envelopes

    def record_envelopes(self, session: Session, envelopes: list[tuple[str, dict]]) -> None:
        """(event_type, envelope from build_envelope or envelope()) pairs in one INSERT, published
        in this order. Each envelope's `type` must be this event at the version the producer
        publishes."""
        for event_type, envelope in envelopes:
            self._check(event_type, envelope)
        self._insert(session, envelopes)

    def _check(self, event_type: str, envelope: dict) -> None:
        cloudevents_type = envelope.get("type")
        try:
            spec = spec_for_type(cloudevents_type)
        except KeyError as exc:
            raise InvalidEvent(f"{event_type}: the envelope's type is not in the catalogue: {exc.args[0]}") from None
        if spec.name != event_type:
            raise InvalidEvent(f"an envelope of type {cloudevents_type} recorded as {event_type!r}")
        declared = self.version_of(event_type)
        if spec.version != declared:
            raise UndeclaredEvent(f"{cloudevents_type} recorded, but this producer publishes {event_type} "
                                  f"v{declared}: build it with Outbox.envelope()")

    def _insert(self, session: Session, envelopes: list[tuple[str, dict]]) -> None:
        # event_type is the event name (the routing key); the version travels in the envelope's type
        if envelopes:
            session.info[_WRITTEN] = True  # this process's relays are woken once it commits
            now = utcnow()
            # executemany, not .values([...]): one INSERT either way on PostgreSQL (insertmanyvalues),
            # but a multi-row .values() statement has no cache key and was compiled on every call
            session.execute(self.table.insert(), [
                {"event_id": envelope["id"], "event_type": event_type, "envelope": envelope, "created_at": now,
                 "attempts": 0} for event_type, envelope in envelopes])


# --- waking the relays of this process after a commit that recorded events ----------------------

_WRITTEN = "mailroom_outbox_written"
_relay_wakers: set[Callable[[], None]] = set()
_committed = 0  # transactions of this process that committed events (see events_committed)


def events_committed() -> int:
    """How many transactions of this process have committed events so far: a relay that read the
    outbox when this was N, and finds it still N, knows nothing of this process's is waiting."""
    return _committed


def on_events_committed(wake: Callable[[], None]) -> Callable[[], None]:
    """Have `wake()` called after any transaction of this process that recorded events commits
    (whichever code path committed it: a handler, an HTTP request, a worker). The relays register
    here, so they need no short poll to find what their own process wrote: their poll is only for
    what another process left behind. Returns the function that unregisters it."""
    _relay_wakers.add(wake)
    return lambda: _relay_wakers.discard(wake)


@event.listens_for(Session, "after_commit")
def _wake_relays(session: Session) -> None:
    global _committed
    if session.info.pop(_WRITTEN, False):
        _committed += 1
        for wake in list(_relay_wakers):
            try:
                wake()
            except Exception:  # a relay that cannot be woken still polls
                log.exception("waking an outbox relay failed")


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_WRITTEN, None)


@dataclass(frozen=True)
class PendingEvent:
    """An outbox row to publish. `body` is the envelope's JSON exactly as stored: the relay sends
    those bytes as they are, instead of parsing 10–200 KB of JSON and serialising it again.
    `type` and `source` are the envelope's (read from its first members only): the AMQP `type`
    and `app_id`, so each row goes out with the version it was recorded at."""

    event_id: str
    event_type: str  # the event name: the routing key
    body: str
    type: str
    source: str


_HEAD = ("source", "type")
_decoder = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")
# the order build_envelope writes, any spacing: read in one match when no string in it has an escape
_WRITTEN_HEAD = re.compile(r'\{\s*"specversion"\s*:\s*"[^"\\]*"\s*,\s*"id"\s*:\s*"[^"\\]*"\s*,'
                           r'\s*"source"\s*:\s*"([^"\\]*)"\s*,\s*"type"\s*:\s*"([^"\\]*)"')


def envelope_head(body: str) -> dict:
    """The envelope's `type` and `source` from the JSON text `body`, decoding only the members
    that come before them: build_envelope writes specversion, id, source and type first and data
    last, so the 10–200 KB of data is not parsed. Members in another order are still read right,
    only slower; a member that is absent is absent from the result."""
    written = _WRITTEN_HEAD.match(body)
    if written is not None:
        return {"source": written.group(1), "type": written.group(2)}
    found: dict = {}
    try:
        index = _SPACE.match(body, 0).end()
        if body[index] != "{":
            raise ValueError("not an object")
        index += 1
        while len(found) < len(_HEAD):
            index = _SPACE.match(body, index).end()
            if body[index] == "}":
                break
            if body[index] == ",":
                index = _SPACE.match(body, index + 1).end()
            if body[index] != '"':
                raise ValueError("not a member name")
            key, index = scanstring(body, index + 1)
            index = _SPACE.match(body, index).end()
            if body[index] != ":":
                raise ValueError("no colon")
            value, index = _decoder.raw_decode(body, _SPACE.match(body, index + 1).end())
            if key in _HEAD:
                found[key] = value
    except (ValueError, IndexError):
        document = json.loads(body)  # not what build_envelope writes: read it the slow way
        return {key: document[key] for key in _HEAD if isinstance(document, dict) and key in document}
    return found


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
        self._queries: dict[bool, object] = {}

    def _pending_query(self, postgres: bool):
        """The pending rows' SELECT, built once (statements are immutable; building one costs
        more than the cached compilation it then uses)."""
        query = self._queries.get(postgres)
        if query is None:
            query = (select(self.table.c.id, self.table.c.event_id, self.table.c.event_type,
                            cast(self.table.c.envelope, Text).label("body"))
                     .where(self.table.c.published_at.is_(None))
                     .order_by(self.table.c.id).limit(self.batch_size))
            if postgres:
                query = query.with_for_update(skip_locked=True)
            self._queries[postgres] = query
        return query

    def relay_once(self) -> int:
        """Publish one batch; returns how many were published. Stops at the first failure so
        that events keep their order; the failed row is retried on the next call."""
        published = 0
        self.last_failed = False
        with self.database.transaction() as session:
            rows = session.execute(self._pending_query(is_postgres(session))).all()
            items = []
            for row in rows:
                # exchange and routing key come from the event name (the same for every version);
                # the type (with the version) and source from the stored envelope itself
                head = envelope_head(row.body)
                items.append((PendingEvent(row.event_id, row.event_type, row.body, head.get("type", ""),
                                           head.get("source", "")),
                              exchange_of(row.event_type), row.event_type))
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
