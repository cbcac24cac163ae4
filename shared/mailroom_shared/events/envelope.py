"""CloudEvents 1.0 structured JSON envelope around every event's data.

The envelope's `type` (`mailroom.<name>.v<N>`) names the event and its version: producers set it
from the version they publish, consumers read the data with that version's schema.

Every envelope also carries the CloudEvents distributed-tracing extension `traceparent` (W3C Trace
Context): the trace of the event being handled when it was built (mailroom_shared.events.tracing).
It is optional for readers: events published before it existed have none.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid

from marshmallow import EXCLUDE, ValidationError

from mailroom_shared.events import compiled, tracing
from mailroom_shared.events.catalogue import TYPE_PREFIX, parse_type, spec_for, spec_for_type, versions

SPECVERSION = "1.0"


# marshmallow schemas hold no per-call state: one instance per event version, compiled for the
# common case (mailroom_shared.events.compiled: marshmallow's own result, at a fraction of the CPU)
@functools.cache
def _publishable(name: str, version: int):
    return compiled.round_tripper(spec_for(name, version).schema())


@functools.cache
def _tolerant_load(name: str, version: int):
    return compiled.loader(spec_for(name, version).schema(unknown=EXCLUDE))


class InvalidEvent(ValueError):
    """A producer tried to publish data that does not match the catalogue."""


def build_envelope(event_type: str, subject: str, data: dict, *, version: int | None = None,
                   event_id: str | None = None, time: dt.datetime | None = None,
                   traceparent: str | None = None) -> dict:
    """Validate `data` against the schema of `event_type` (an event name) at `version` and wrap
    it; raises InvalidEvent on a mismatch. Without `version`, the event's only version
    (VersionRequired if it has several). Producers go through Outbox, which passes the version
    they declare. Without `traceparent`, the event continues the current trace (the event being
    handled) or starts one (tracing.next_traceparent)."""
    spec = spec_for(event_type, version)
    try:
        published = _publishable(spec.name, spec.version)(data)
    except ValidationError as exc:
        raise InvalidEvent(f"{spec.cloudevents_type}: {exc.messages}") from exc
    return {
        "specversion": SPECVERSION,
        "id": event_id or str(uuid.uuid4()),
        "source": spec.source,
        "type": spec.cloudevents_type,
        "time": (time or dt.datetime.now(dt.UTC)).isoformat(),
        "subject": str(subject),
        "datacontenttype": "application/json",
        "traceparent": traceparent if tracing.parse(traceparent) is not None else tracing.next_traceparent(),
        "data": published,
    }


def envelope_version(envelope: dict) -> int:
    """The version of the event in `envelope` (from its `type`), for a consumer that handles two
    versions while the older one is retired. The envelope must have gone through parse_envelope."""
    return parse_type(envelope["type"])[1]


def parse_envelope(envelope: dict, event_type: str) -> dict:
    """Tolerant reader: returns the event's data, read with the schema of the version its `type`
    names, with unknown fields dropped. `event_type` is the event name the consumer subscribed to.

    Raises marshmallow.ValidationError when the message can never succeed, so the consumer
    dead-letters it at once: not an envelope, no `type`, a `type` of another event or of a
    version the catalogue does not know, or a field the schema requires is missing.
    """
    if not isinstance(envelope, dict) or "data" not in envelope or "id" not in envelope:
        raise ValidationError({"_envelope": ["not a CloudEvents envelope"]})
    spec = _spec_of(envelope.get("type"), event_type)
    return _tolerant_load(spec.name, spec.version)(envelope["data"])


def _spec_of(cloudevents_type, event_type: str):
    try:
        spec = spec_for_type(cloudevents_type)
    except KeyError:
        spec = None
    if spec is not None and spec.name == event_type:
        return spec
    expected = f"{TYPE_PREFIX}{event_type}.v<N>"
    if cloudevents_type is None:
        problem = f"missing: a CloudEvents envelope names its type ({expected})"
    elif spec is not None:
        problem = f"{cloudevents_type!r} is a {spec.name} event, not {event_type} ({expected})"
    else:
        try:
            name, version = parse_type(cloudevents_type)
        except ValueError:
            problem = f"{json.dumps(cloudevents_type)[:100]} is not a mailroom event type ({expected})"
        else:
            if name != event_type:
                problem = f"{cloudevents_type!r} is not a {event_type} event ({expected})"
            else:
                problem = (f"unknown version {version} of {event_type} "
                           f"(this consumer knows {', '.join(f'v{v}' for v in versions(event_type)) or 'none'})")
    raise ValidationError({"type": [problem]})
