"""The notifier skeleton runs as a real process: migrated, healthy, and its exchange exists."""

import pika
import pytest

from mailroom_testing.specs import NOTIFIER

pytestmark = pytest.mark.integration


def test_notifier_starts_answers_health_and_declares_its_exchange(stack_factory):
    stack = stack_factory([NOTIFIER])
    status, body = stack.get("/health/notifier")
    assert status == 200 and body == {"service": "notifier", "status": "ok", "database": "up"}
    connection = pika.BlockingConnection(pika.URLParameters(stack.amqp_uri))
    try:
        connection.channel().exchange_declare("notifier.events", "topic", durable=True, passive=True)
    finally:
        connection.close()
