"""Which inbound messages are delivery reports and what delivery_report_received carries (#16):
ingest decides with these, so outbound no longer reads every message_received to find bounces."""

from mailroom_shared.events import build_envelope, parse_envelope
from mailroom_shared.events.delivery_reports import delivery_report, delivery_report_reason, is_delivery_report

MESSAGE_RECEIVED = {
    "intake_id": "intake-7", "channel_address": "support@acme.test", "via": "smtp",
    "message_id": "dsn-1@mx.example.net", "subject": "Undelivered Mail Returned to Sender",
    "attributed_to": {"name": "Mail Delivery System", "email": "mailer-daemon@mx.example.net"},
    "text": "This is the mail system.\n\n<bob@example.com>: host mx said: 550 5.1.1   User unknown\n" + "x" * 50_000,
    "html": "<p>" + "y" * 50_000 + "</p>", "size": 120_000, "raw_url": "/api/ingest/messages/intake-7/raw",
    "flags": {"auto_submitted": True, "bounce": True, "spam": False, "loop": False, "reasons": ["bounce"]},
    "received_at": "2026-12-07T04:00:00+00:00",
    "bounced_message_ids": ["sent-1@acme.test"],
    "bounced_recipients": [{"email": "bob@example.com", "action": "failed", "status": "5.1.1",
                            "diagnostic": "smtp; 550 5.1.1 User unknown"}],
}


def test_only_a_bounce_naming_a_returned_message_is_a_delivery_report():
    assert is_delivery_report(MESSAGE_RECEIVED)
    assert not is_delivery_report({**MESSAGE_RECEIVED, "flags": {**MESSAGE_RECEIVED["flags"], "bounce": False}})
    assert not is_delivery_report({**MESSAGE_RECEIVED, "bounced_message_ids": []})  # nothing to match
    assert not is_delivery_report({"subject": "Where is my order?", "flags": {"bounce": False}})
    assert not is_delivery_report({"subject": "no flags at all"})


def test_the_reason_is_the_first_status_line_else_the_first_line_else_the_subject():
    assert delivery_report_reason(MESSAGE_RECEIVED) == "<bob@example.com>: host mx said: 550 5.1.1 User unknown"
    assert delivery_report_reason({"text": "\n  Delivery failed.\nsorry\n", "subject": "S"}) == "Delivery failed."
    assert delivery_report_reason({"text": None, "subject": "Returned mail"}) == "Returned mail"
    assert delivery_report_reason({}) == "delivery status notification"
    assert len(delivery_report_reason({"text": "5.1.1 " + "z" * 900})) == 500


def test_the_event_carries_what_bounce_matching_needs_and_none_of_the_content():
    data = delivery_report(MESSAGE_RECEIVED)
    assert data == {
        "intake_id": "intake-7", "raw_url": "/api/ingest/messages/intake-7/raw",
        "reason": "<bob@example.com>: host mx said: 550 5.1.1 User unknown",
        "bounced_message_ids": ["sent-1@acme.test"],
        "bounced_recipients": [{"email": "bob@example.com", "action": "failed", "status": "5.1.1",
                                "diagnostic": "smtp; 550 5.1.1 User unknown"}]}
    envelope = build_envelope("delivery_report_received", "intake-7", data)  # validated by the catalogue
    assert envelope["type"] == "mailroom.delivery_report_received.v1" and envelope["source"] == "mailroom/ingest"
    assert parse_envelope(envelope, "delivery_report_received") == data
    assert len(str(envelope)) < 1_000 < len(str(MESSAGE_RECEIVED)) // 100
