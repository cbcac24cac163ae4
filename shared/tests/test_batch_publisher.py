"""The relay's batch publisher against the real RabbitMQ: one wait for the confirms of a whole
batch, and an exact account of which prefix of the batch the broker took."""

import uuid

import pytest
from kombu import Connection, Exchange, Queue

from mailroom_shared.messaging.publishing import ConfirmedBatchPublisher, OutgoingMessage, PublishRefused

pytestmark = pytest.mark.integration

EXCHANGE = "test.events"


@pytest.fixture
def bound_queue(amqp_uri):
    """A topic exchange with a queue bound to `thing.*` only."""
    with Connection(amqp_uri) as connection:
        channel = connection.channel()
        exchange = Exchange(EXCHANGE, type="topic", durable=True)
        queue = Queue("test.things", exchange=exchange, routing_key="thing.*", durable=True)
        queue(channel).declare()
        channel.close()
    return queue


def message(key: str = "thing.done", n: int = 0) -> OutgoingMessage:
    return OutgoingMessage(body=f'{{"n": {n}}}', exchange=EXCHANGE, routing_key=key, message_id=str(uuid.uuid4()),
                           type="thing_done", app_id="mailroom/test")


def drain(amqp_uri, queue) -> list[dict]:
    received = []
    with Connection(amqp_uri) as connection:
        simple = connection.SimpleQueue(queue)
        while True:
            try:
                item = simple.get(timeout=1)
            except simple.Empty:
                break
            received.append({"payload": item.payload, "message_id": item.properties.get("message_id"),
                             "content_type": item.content_type})
            item.ack()
        simple.close()
    return received


def test_a_batch_is_confirmed_in_one_go_and_arrives_in_order(amqp_uri, bound_queue):
    publisher = ConfirmedBatchPublisher(amqp_uri)
    batch = [message(n=n) for n in range(50)]
    try:
        assert publisher.publish_batch(batch) == (50, None)
        assert publisher.publish_batch([message(n=50)]) == (1, None)  # the channel is reused
    finally:
        publisher.close()
    received = drain(amqp_uri, bound_queue)
    assert [r["payload"]["n"] for r in received] == list(range(51))
    assert [r["message_id"] for r in received[:50]] == [m.message_id for m in batch]
    assert received[0]["content_type"] == "application/json"


def test_an_unroutable_message_stops_the_batch_at_it(amqp_uri, bound_queue):
    publisher = ConfirmedBatchPublisher(amqp_uri)
    batch = [message(n=0), message(n=1), message(key="nobody.listens", n=2), message(n=3)]
    try:
        done, error = publisher.publish_batch(batch)
    finally:
        publisher.close()
    assert done == 2
    assert isinstance(error, PublishRefused) and "unroutable" in str(error) and batch[2].message_id in str(error)
    # the message after the refused one was routed too: the relay publishes it again after the
    # refused one (a duplicate the consumers' idempotency absorbs), as the module documents
    assert [r["payload"]["n"] for r in drain(amqp_uri, bound_queue)] == [0, 1, 3]


def test_a_lost_connection_fails_the_batch_and_the_next_one_reconnects(amqp_uri, bound_queue):
    publisher = ConfirmedBatchPublisher(amqp_uri)
    try:
        assert publisher.publish_batch([message(n=0)]) == (1, None)
        publisher._connection.connection.sock.close()  # the broker connection drops
        done, error = publisher.publish_batch([message(n=1)])
        assert (done, error is not None) == (0, True)
        assert publisher.publish_batch([message(n=2)]) == (1, None)
    finally:
        publisher.close()
    assert [r["payload"]["n"] for r in drain(amqp_uri, bound_queue)][-1] == 2


def test_an_exchange_that_does_not_exist_is_an_error_not_a_loss(amqp_uri):
    publisher = ConfirmedBatchPublisher(amqp_uri)
    try:
        done, error = publisher.publish_batch([OutgoingMessage("{}", "no.such.exchange", "x", "id-1", "t", "a")])
    finally:
        publisher.close()
    assert done == 0 and error is not None
