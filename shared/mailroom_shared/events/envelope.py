"""CloudEvents 1.0 structured JSON envelope around every event's data."""

from __future__ import annotations

import datetime as dt
import functools
import uuid

from marshmallow import EXCLUDE, ValidationError

from mailroom_shared.events.catalogue import spec_for

SPECVERSION = "1.0"


@functools.cache
def _strict_schema(event_type: str):
    return spec_for(event_type).schema()


@functools.cache
def _tolerant_schema(event_type: str):
    return spec_for(event_type).schema(unknown=EXCLUDE)


class InvalidEvent(ValueError):
    """A producer tried to publish data that does not match the catalogue."""


def build_envelope(event_type: str, subject: str, data: dict, *, event_id: str | None = None,
                   time: dt.datetime | None = None) -> dict:
    """Validate `data` against the catalogue and wrap it; raises InvalidEvent on a mismatch."""
    spec = spec_for(event_type)
    schema = _strict_schema(event_type)  # marshmallow schemas hold no per-call state: reuse them
    try:
        validated = schema.load(data)
    except ValidationError as exc:
        raise InvalidEvent(f"{event_type}: {exc.messages}") from exc
    return {
        "specversion": SPECVERSION,
        "id": event_id or str(uuid.uuid4()),
        "source": f"mailroom/{spec.producer}",
        "type": spec.cloudevents_type,
        "time": (time or dt.datetime.now(dt.UTC)).isoformat(),
        "subject": str(subject),
        "datacontenttype": "application/json",
        "data": schema.dump(validated),
    }


def parse_envelope(envelope: dict, event_type: str) -> dict:
    """Tolerant reader: returns the event's data with unknown fields dropped.

    Raises marshmallow.ValidationError when a field the consumer relies on is missing:
    such a message can never succeed, so the consumer dead-letters it at once.
    """
    if not isinstance(envelope, dict) or "data" not in envelope or "id" not in envelope:
        raise ValidationError({"_envelope": ["not a CloudEvents envelope"]})
    return _tolerant_schema(event_type).load(envelope["data"])
