"""Faults between a service and its broker, with a real contacts process: a connection the broker
closes is opened again and nothing published meanwhile is lost; a dead letter replayed after a fix
takes effect exactly once, even when it is replayed twice."""

import uuid

import pytest

from mailroom_shared.events.envelope import build_envelope
from mailroom_shared.messaging.dead_letters import ATTEMPT_HEADER, ERROR_HEADER, DeadLetters
from mailroom_testing.infra import query_scalar
from mailroom_testing.publishing import publish_envelopes
from mailroom_testing.specs import CONTACTS
from mailroom_testing.subscriber import EventSubscriber

pytestmark = pytest.mark.integration

QUEUE = "evt-ingest-message_received--contacts.handle_message_received"


def received(sender: str) -> dict:
    data = {
        "intake_id": str(uuid.uuid4()), "channel_address": "support@mailroom.test", "via": "smtp",
        "message_id": f"{uuid.uuid4()}@faults.example", "subject": "hello", "date": None,
        "sender": {"name": None, "email": sender}, "attributed_to": {"name": None, "email": sender},
        "to": [{"name": None, "email": "support@mailroom.test"}], "text": "hi", "html": None, "size": 10,
        "raw_url": "/api/ingest/messages/x/raw", "attachments": [], "received_at": "2026-12-06T10:00:00+00:00",
        "flags": {"auto_submitted": False, "bounce": False, "spam": False, "loop": False, "reasons": []},
        "forward": None}
    return build_envelope("message_received", data["intake_id"], data)


def publish(amqp_uri: str, envelopes: list[dict], *, exchange="ingest.events", routing_key="message_received",
            headers=None) -> None:
    publish_envelopes(amqp_uri, envelopes, exchange=exchange, routing_key=routing_key, headers=headers)


def test_a_connection_the_broker_closes_is_opened_again_and_nothing_is_lost(stack_factory, rabbit_admin):
    stack = stack_factory([CONTACTS])
    database = stack.database_urls["contacts"]
    publish(stack.amqp_uri, [received(f"before-{n}@faults.example") for n in range(20)])
    stack.eventually(lambda: query_scalar(database, "SELECT count(*) FROM contacts") == 20, timeout=60)

    # the service's consumers and publisher (the management API lists connections a few seconds late)
    stack.eventually(lambda: rabbit_admin.close_connections(stack.amqp_uri), timeout=30, interval=1)
    publish(stack.amqp_uri, [received(f"after-{n}@faults.example") for n in range(20)])

    stack.eventually(lambda: query_scalar(database, "SELECT count(*) FROM contacts") == 40, timeout=90)
    assert query_scalar(database, "SELECT count(*) FROM timeline_entries") == 40
    # and its own events still go out: a new sender after the cut is announced
    with EventSubscriber(stack.amqp_uri, [("contacts.events", "contact_created")]) as events:
        publish(stack.amqp_uri, [received("later@faults.example")])
        events.wait_for("contact_created", timeout=60)


def test_a_dead_letter_replayed_after_a_fix_takes_effect_exactly_once(stack_factory):
    stack = stack_factory([CONTACTS])
    database = stack.database_urls["contacts"]
    envelope = received("parked@faults.example")
    # as the retrying handler leaves a message that failed every attempt (twice: a replay that
    # crashed between its publish and its acknowledgement leaves a copy in both places)
    publish(stack.amqp_uri, [envelope, envelope], exchange="", routing_key=QUEUE + ".dlq",
            headers={ATTEMPT_HEADER: 6, ERROR_HEADER: "OperationalError: database was down"})
    assert [letter.message_id for letter in DeadLetters(stack.amqp_uri).browse(QUEUE)] == [envelope["id"]] * 2

    with EventSubscriber(stack.amqp_uri, [("contacts.events", "contact_created")]) as events:
        assert DeadLetters(stack.amqp_uri).replay(QUEUE) == 2
        events.wait_for("contact_created", timeout=60)
        stack.eventually(lambda: DeadLetters(stack.amqp_uri).counts()[QUEUE] == 0 and query_scalar(
            database, "SELECT count(*) FROM processed_events") == 1)
        later = received("parked@faults.example")  # a later message proves both copies were consumed
        publish(stack.amqp_uri, [later])
        stack.eventually(lambda: query_scalar(database, "SELECT count(*) FROM timeline_entries") == 2, timeout=60)
        assert len(events.of_type("contact_created")) == 1
    assert query_scalar(database, "SELECT count(*) FROM contacts") == 1
