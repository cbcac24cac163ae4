"""One trace id follows a message through every service: the CloudEvents distributed-tracing
extension (`traceparent`, a W3C Trace Context header value) on every envelope.

* ingest starts the trace of an inbound message from its intake id (`intake_traceparent`): the
  SMTP listener, the HTTP intake and the processor all know that id, so they name the same trace
  without storing anything, and processing a row again gives the same trace id;
* a consumer continues the trace of the event it handles: the kit runs the handler inside
  `continuing(envelope)`, and `build_envelope` gives every event built there a child of it (same
  trace id, a span id of its own);
* an HTTP request continues its caller's `traceparent` header when it sends a valid one, and
  otherwise starts a trace of its own;
* anything else (a timer, a worker outside a handler) starts a new trace per event.

Log lines carry the trace id (`trace_id`), so `grep <trace id>` over every service's JSON logs
shows one message's whole path.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import re
import secrets
import uuid
from collections.abc import Iterator, Mapping

VERSION = "00"
SAMPLED = "01"
TRACEPARENT = re.compile(r"^(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<span_id>[0-9a-f]{16})"
                         r"-(?P<flags>[0-9a-f]{2})(?:-.*)?$")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16

CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("mailroom_traceparent", default=None)


def parse(traceparent) -> dict | None:
    """The fields of a valid `traceparent` (W3C Trace Context: version ff and all-zero ids are
    invalid; a later version's extra fields are ignored, version 00 has none), else None."""
    if not isinstance(traceparent, str) or len(traceparent) > 512:
        return None
    match = TRACEPARENT.match(traceparent)
    if match is None:
        return None
    fields = match.groupdict()
    if (fields["version"] == "ff" or fields["trace_id"] == _ZERO_TRACE or fields["span_id"] == _ZERO_SPAN
            or (fields["version"] == VERSION and len(traceparent) != 55)):
        return None
    return fields


def trace_id(traceparent) -> str | None:
    fields = parse(traceparent)
    return fields["trace_id"] if fields else None


def _span_id() -> str:
    while (span := secrets.token_hex(8)) == _ZERO_SPAN:
        pass
    return span


def new_traceparent(trace: str | None = None) -> str:
    """A traceparent in `trace` (32 hex; a new random trace when None), with a new span id."""
    if trace is None:
        while (trace := secrets.token_hex(16)) == _ZERO_TRACE:
            pass
    return f"{VERSION}-{trace}-{_span_id()}-{SAMPLED}"


def child_of(traceparent: str) -> str:
    """Same trace and flags, a span of its own; a new trace when `traceparent` is not valid."""
    fields = parse(traceparent)
    if fields is None:
        return new_traceparent()
    return f"{VERSION}-{fields['trace_id']}-{_span_id()}-{fields['flags']}"


def derived_trace_id(key: str) -> str:
    """A trace id that is always the same for `key`: a UUID's own 32 hex digits (so an intake id
    and its trace id read alike), anything else hashed."""
    try:
        trace = uuid.UUID(str(key)).hex
    except ValueError:
        trace = hashlib.sha256(str(key).encode()).hexdigest()[:32]
    return trace if trace != _ZERO_TRACE else hashlib.sha256(b"zero").hexdigest()[:32]


def intake_traceparent(intake_id: str) -> str:
    """Where an inbound message's trace starts: derived from its intake id (see module doc)."""
    return new_traceparent(derived_trace_id(intake_id))


def for_envelope(envelope: Mapping) -> str:
    """The trace an event handled from `envelope` continues: its traceparent, or, for an event
    published before traceparent existed, one derived from its source and id (the same on every
    redelivery)."""
    traceparent = envelope.get("traceparent") if isinstance(envelope, Mapping) else None
    if parse(traceparent) is not None:
        return traceparent
    key = f"{envelope.get('source')}/{envelope.get('id')}" if isinstance(envelope, Mapping) else repr(envelope)
    return new_traceparent(derived_trace_id(key))


@contextlib.contextmanager
def within(traceparent: str | None) -> Iterator[str | None]:
    """Events built inside (this green thread only) continue `traceparent`'s trace."""
    token = CURRENT.set(traceparent if parse(traceparent) is not None else None)
    try:
        yield CURRENT.get()
    finally:
        CURRENT.reset(token)


def continuing(envelope: Mapping) -> contextlib.AbstractContextManager:
    """Events built inside continue the trace of the event `envelope` being handled."""
    return within(for_envelope(envelope))


def next_traceparent() -> str:
    """The traceparent of an event built now: a child of the current trace, or a new trace."""
    current = CURRENT.get()
    return child_of(current) if current else new_traceparent()
