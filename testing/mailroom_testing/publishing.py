"""Publish events into a test vhost as another service would (validated envelopes)."""

from __future__ import annotations

import json

import pika

from mailroom_shared.events.catalogue import exchange_of
from mailroom_shared.events.envelope import build_envelope
from mailroom_testing.contracts import TEST_PUBLISHED_HEADER

# marks what a test publishes itself (hostile, malformed, replayed on purpose): not the stack's
# events, so the contract check after the test (mailroom_testing.contracts) leaves it out
TEST_HEADERS = {TEST_PUBLISHED_HEADER: True}


def publish_event(amqp_uri: str, event_type: str, subject: str, data: dict, event_id: str | None = None,
                  version: int | None = None) -> dict:
    """`event_type` (an event name) at `version` (by default its only version)."""
    envelope = build_envelope(event_type, subject, data, version=version, event_id=event_id)
    publish_raw(amqp_uri, exchange_of(event_type), event_type, json.dumps(envelope).encode())
    return envelope


def publish_raw(amqp_uri: str, exchange: str, routing_key: str, body: bytes,
                content_type: str = "application/json") -> None:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange, routing_key, body, pika.BasicProperties(
            content_type=content_type, delivery_mode=2, headers=TEST_HEADERS), mandatory=True)
    finally:
        connection.close()


def queue_depth(amqp_uri: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def publish_envelopes(amqp_uri: str, envelopes: list[dict], *, exchange: str, routing_key: str,
                      headers: dict | None = None) -> None:
    """Several envelopes on one confirmed channel, with the AMQP properties the relay sets."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for envelope in envelopes:
            channel.basic_publish(exchange, routing_key, json.dumps(envelope).encode(), pika.BasicProperties(
                content_type="application/json", delivery_mode=2, message_id=envelope["id"],
                type=envelope["type"], headers={**(headers or {}), **TEST_HEADERS}))
    finally:
        connection.close()
