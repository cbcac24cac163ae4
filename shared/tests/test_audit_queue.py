"""The audit queue against the real RabbitMQ (#16): off by default it takes only the events no
service subscribes to (so their confirmed, mandatory publish is routed, not refused), and no copy
of the others (that copy doubled RabbitMQ's work per event); MAILROOM_AUDIT_EVENTS=true makes it
keep a copy of every event again, and turning it off again stops the copy."""

import json
import uuid

import pytest
from kombu import Connection

from mailroom_shared.messaging import topology
from mailroom_shared.messaging.publishing import ConfirmedBatchPublisher, OutgoingMessage

pytestmark = pytest.mark.integration

SUBSCRIBED = "evt-ingest-message_received--contacts.handle_message_received"


def declare(amqp_uri):
    with Connection(amqp_uri) as connection:
        topology.declare_topology(connection)


def depth(amqp_uri, name: str) -> int:
    with Connection(amqp_uri) as connection:
        channel = connection.connection.channel()
        try:
            return channel.queue_declare(name, passive=True).message_count
        finally:
            channel.close()


def publish(amqp_uri, source: str, event_type: str) -> tuple[int, Exception | None]:
    publisher = ConfirmedBatchPublisher(amqp_uri, confirm_timeout=10)
    try:
        message_id = str(uuid.uuid4())
        return publisher.publish_batch([OutgoingMessage(
            body=json.dumps({"id": message_id}), exchange=f"{source}.events", routing_key=event_type,
            message_id=message_id, type=f"mailroom.{event_type}.v1", app_id=source)])
    finally:
        publisher.close()


def test_off_by_default_only_unsubscribed_events_reach_the_audit_queue(amqp_uri, monkeypatch):
    monkeypatch.delenv(topology.AUDIT_EVENTS_ENV, raising=False)
    declare(amqp_uri)

    assert publish(amqp_uri, "ingest", "message_received") == (1, None)
    assert depth(amqp_uri, SUBSCRIBED) == 1
    assert depth(amqp_uri, topology.AUDIT_QUEUE) == 0  # no copy

    # nobody subscribes to mailbox_unreachable: routed to the audit queue, the publish confirmed
    assert publish(amqp_uri, "ingest", "mailbox_unreachable") == (1, None)
    assert depth(amqp_uri, topology.AUDIT_QUEUE) == 1

    # an event type outside the topology is still refused as unroutable (the relay keeps it)
    done, error = publish(amqp_uri, "ingest", "no_such_event")
    assert done == 0 and "unroutable" in str(error)


def test_every_catalogued_event_is_routed_somewhere_with_the_copy_off(monkeypatch):
    monkeypatch.delenv(topology.AUDIT_EVENTS_ENV, raising=False)
    routed = {(sub.source, sub.event_type) for sub in topology.SUBSCRIPTIONS}
    routed |= {(exchange.removesuffix(".events"), key) for exchange, key in topology.audit_bindings()}
    for producer in topology.PRODUCERS:
        for event_type in topology.published_event_types(producer):
            assert (producer, event_type) in routed, f"{producer}.{event_type} would be refused as unroutable"
    assert topology.AUDIT_EVERYTHING not in {key for _exchange, key in topology.audit_bindings()}


def test_opted_in_every_event_is_copied_and_opting_out_stops_it(amqp_uri, monkeypatch):
    monkeypatch.setenv(topology.AUDIT_EVENTS_ENV, "true")
    declare(amqp_uri)
    assert publish(amqp_uri, "ingest", "message_received") == (1, None)
    assert publish(amqp_uri, "conversations", "message_added") == (1, None)
    assert depth(amqp_uri, topology.AUDIT_QUEUE) == 2

    monkeypatch.setenv(topology.AUDIT_EVENTS_ENV, "false")
    declare(amqp_uri)  # the next service start, configured without the copy
    assert publish(amqp_uri, "ingest", "message_received") == (1, None)
    assert depth(amqp_uri, topology.AUDIT_QUEUE) == 2  # kept what it had, took no new copy
    assert depth(amqp_uri, SUBSCRIBED) == 2


def test_a_malformed_setting_is_refused(monkeypatch):
    monkeypatch.setenv(topology.AUDIT_EVENTS_ENV, "sometimes")
    with pytest.raises(Exception, match=topology.AUDIT_EVENTS_ENV):
        topology.audit_bindings()
