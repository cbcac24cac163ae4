"""The body of a webhook delivery: the event's CloudEvents envelope exactly as it travelled on
RabbitMQ, plus, for an event about a conversation, the CloudEvents `sequence` extension
attribute (https://github.com/cloudevents/spec/blob/main/cloudevents/extensions/sequence.md):
the event's place among the events of that conversation sent to that subscription, as a
lexicographically orderable string (20 digits, zero-padded; compare as text or as an integer)."""

from __future__ import annotations

import json

ATTRIBUTE = "sequence"
WIDTH = 20


def format_sequence(number: int) -> str:
    return f"{number:0{WIDTH}d}"


def body(envelope: dict, sequence: int | None) -> str:
    """The JSON sent; an envelope already carrying `sequence` (not one of ours) keeps it."""
    document = dict(envelope)
    if sequence is not None and ATTRIBUTE not in document:
        document[ATTRIBUTE] = format_sequence(sequence)
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)
