"""The event contract: producers cannot publish what the catalogue does not describe; consumers
read tolerantly (with the schema of the version the envelope's type names: test_event_versions.py)."""

import pytest
from marshmallow import ValidationError

from mailroom_shared.events.envelope import InvalidEvent, build_envelope, parse_envelope

INBOX = {"inbox_id": "i1", "name": "Support", "channel_addresses": ["support@x.test"], "member_emails": []}


def test_envelope_is_cloudevents_structured_json():
    envelope = build_envelope("inbox_updated", "i1", INBOX)
    assert envelope["specversion"] == "1.0"
    assert envelope["source"] == "mailroom/conversations"
    assert envelope["type"] == "mailroom.inbox_updated.v1"
    assert envelope["subject"] == "i1" and envelope["datacontenttype"] == "application/json"
    assert envelope["data"].items() >= INBOX.items()
    assert len(envelope["id"]) == 36 and envelope["time"].endswith("+00:00")


def test_producer_cannot_publish_invalid_or_unknown_events():
    with pytest.raises(InvalidEvent, match="channel_addresses"):
        build_envelope("inbox_updated", "i1", {"inbox_id": "i1", "name": "x"})
    with pytest.raises(KeyError, match="unknown event type"):
        build_envelope("inbox_exploded", "i1", INBOX)


def test_consumer_ignores_unknown_fields_but_rejects_missing_ones():
    envelope = build_envelope("inbox_updated", "i1", INBOX)
    envelope["data"]["added_in_a_later_version"] = True
    assert parse_envelope(envelope, "inbox_updated")["name"] == "Support"
    with pytest.raises(ValidationError):
        parse_envelope({"id": "x", "type": "mailroom.inbox_updated.v1", "data": {"name": "no inbox id"}},
                       "inbox_updated")
    with pytest.raises(ValidationError, match="type"):  # CloudEvents requires a type: no guessing v1
        parse_envelope({"id": "x", "data": INBOX}, "inbox_updated")
    with pytest.raises(ValidationError):
        parse_envelope(["not", "an", "envelope"], "inbox_updated")
