"""The notifier service's own tables. Slack thread maps and webhook subscriptions come with the
notifier's own issue; for now it owns only the reliability tables every service has."""

from sqlalchemy.orm import DeclarativeBase

from mailroom_shared.db import new_metadata
from mailroom_shared.messaging.idempotency import processed_events_table
from mailroom_shared.messaging.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = new_metadata()


outbox = outbox_table(Base.metadata)
processed_events = processed_events_table(Base.metadata)
