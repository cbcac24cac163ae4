"""traceparent on every envelope (mailroom_shared.events.tracing): what a producer sets, what a
consumer continues, what a hostile or old value becomes, and the log lines that name the trace."""

import io
import json
import logging

import pytest

from mailroom_shared import observability
from mailroom_shared.events import tracing
from mailroom_shared.events.envelope import build_envelope, parse_envelope

W3C_EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
CONTACT = {"contact_id": "c-1", "name": None, "emails": ["pat@customer.example"], "created_from": "e-1"}


def test_the_w3c_example_parses():
    assert tracing.parse(W3C_EXAMPLE) == {"version": "00", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                                          "span_id": "00f067aa0ba902b7", "flags": "01"}


@pytest.mark.parametrize("value", [
    None, 7, "", "garbage", W3C_EXAMPLE.upper(),  # hex is lower case
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is invalid
    W3C_EXAMPLE + "-extra",  # version 00 has exactly four fields
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
    W3C_EXAMPLE + "\r\nX-Injected: 1", "01-" + "a" * 32 + "-" + "b" * 16 + "-01-" + "x" * 1000,  # oversized
])
def test_malformed_hostile_and_oversized_values_are_not_a_trace(value):
    assert tracing.parse(value) is None
    assert tracing.trace_id(value) is None
    fresh = tracing.child_of(value)  # a new trace instead
    assert tracing.parse(fresh) is not None
    with tracing.within(value) as current:
        assert current is None


def test_a_later_version_with_more_fields_is_read():
    assert tracing.trace_id("01-" + "a" * 32 + "-" + "b" * 16 + "-01-more") == "a" * 32


def test_a_child_keeps_the_trace_and_flags_with_a_span_of_its_own():
    child = tracing.child_of(W3C_EXAMPLE)
    assert tracing.trace_id(child) == tracing.trace_id(W3C_EXAMPLE)
    assert tracing.parse(child)["span_id"] != tracing.parse(W3C_EXAMPLE)["span_id"]
    assert child.endswith("-01")


def test_an_envelope_always_has_a_traceparent_and_one_built_while_handling_continues_that_trace():
    alone = build_envelope("contact_created", "c-1", CONTACT)
    assert tracing.parse(alone["traceparent"]) is not None
    assert tracing.trace_id(build_envelope("contact_created", "c-1", CONTACT)["traceparent"]) != \
        tracing.trace_id(alone["traceparent"])  # nothing handled: a trace each
    with tracing.continuing(alone):
        child = build_envelope("contact_created", "c-2", CONTACT)
        duplicate = build_envelope("contact_created", "c-2", CONTACT)
    assert tracing.trace_id(child["traceparent"]) == tracing.trace_id(alone["traceparent"])
    assert child["traceparent"] != duplicate["traceparent"]  # same trace, spans of their own
    given = build_envelope("contact_created", "c-3", CONTACT, traceparent=W3C_EXAMPLE)
    assert given["traceparent"] == W3C_EXAMPLE
    assert tracing.parse(build_envelope("contact_created", "c-3", CONTACT, traceparent="x")["traceparent"])
    # the relay reads source and type from the first members: traceparent comes after them
    assert list(alone)[:4] == ["specversion", "id", "source", "type"] and list(alone)[-1] == "data"


def test_an_old_event_without_traceparent_is_read_and_gets_one_stable_trace():
    old = build_envelope("contact_created", "c-1", CONTACT)
    del old["traceparent"]
    assert parse_envelope(old, "contact_created")["contact_id"] == "c-1"
    first, again = tracing.for_envelope(old), tracing.for_envelope(dict(old))
    assert tracing.trace_id(first) == tracing.trace_id(again)  # a redelivery continues the same trace
    other = {**old, "id": "another"}
    assert tracing.trace_id(tracing.for_envelope(other)) != tracing.trace_id(first)


def test_the_trace_of_an_intake_is_its_id():
    intake_id = "41946fcd-e83f-4469-aadd-33426c679200"
    assert tracing.trace_id(tracing.intake_traceparent(intake_id)) == "41946fcde83f4469aadd33426c679200"
    assert tracing.derived_trace_id("not-a-uuid") == tracing.derived_trace_id("not-a-uuid")
    assert len(tracing.derived_trace_id("not-a-uuid")) == 32
    assert tracing.derived_trace_id("00000000-0000-0000-0000-000000000000") != "0" * 32


def test_json_log_lines_of_a_handled_event_carry_its_trace_id(monkeypatch):
    envelope = build_envelope("contact_created", "c-1", CONTACT, traceparent=W3C_EXAMPLE)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(observability.JsonFormatter())
    logger = logging.getLogger("test.tracing")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with observability.log_context(**observability.envelope_fields(envelope)):
            logger.info("handled")
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert inside["correlation_id"] == W3C_EXAMPLE and inside["event_id"] == envelope["id"]
    assert "trace_id" not in outside
    # a hostile traceparent is no trace id in the logs
    fields = observability.envelope_fields({**envelope, "traceparent": "00-" + "g" * 32 + "-" + "1" * 16 + "-01"})
    assert "trace_id" not in fields
