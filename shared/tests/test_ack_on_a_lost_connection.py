"""A message whose connection the broker dropped while its handler ran (a RabbitMQ restart resets
the socket): acknowledging it must not end the service, and the broker hands it out again."""

import logging
import socket
import time
import uuid

import pytest
from kombu import Connection, Queue

from mailroom_shared.messaging.nameko_adapters import DeadLetteringQueueConsumer

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("settle", ["ack_message", "requeue_message"])
def test_settling_a_message_on_a_reset_connection_logs_and_the_broker_redelivers_it(amqp_uri, caplog, settle):
    queue = Queue(f"test-lost-ack-{uuid.uuid4().hex[:8]}", durable=False, auto_delete=False)
    with Connection(amqp_uri) as publisher:
        producer = publisher.Producer()
        producer.publish({"n": 1}, routing_key=queue.name, declare=[queue], serializer="json")
    consuming = Connection(amqp_uri)
    try:
        message = queue(consuming.channel()).get(no_ack=False)
        assert message is not None and not message.delivery_info["redelivered"]
        # the broker's side of the socket goes away while the handler runs
        consuming.connection.transport.sock.shutdown(socket.SHUT_RDWR)
        with caplog.at_level(logging.WARNING, "mailroom_shared.messaging.nameko_adapters"):
            getattr(DeadLetteringQueueConsumer(), settle)(message)  # raised BrokenPipeError before
        assert "its connection is gone" in caplog.text
    finally:
        consuming.collect()
    with Connection(amqp_uri) as again:
        bound = queue(again.channel())
        redelivered = None
        for _ in range(50):  # the broker notices the closed socket within moments
            redelivered = bound.get(no_ack=True)
            if redelivered is not None:
                break
            time.sleep(0.1)
        assert redelivered is not None and redelivered.payload == {"n": 1}
        assert redelivered.delivery_info["redelivered"]
        bound.delete()
