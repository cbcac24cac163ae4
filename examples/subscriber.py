"""A runnable example of another system subscribing to mailroom's events with pika.

    python examples/subscriber.py                       # every conversation_created
    python examples/subscriber.py conversations.events '#'   # everything conversations publishes

It declares ITS OWN durable queue (name it after your system), binds it to mailroom's topic
exchange with the routing keys it wants, and acks each event after handling it. Events are
CloudEvents 1.0 JSON envelopes; de-duplicate on (source, id): delivery is at-least-once.
"""

from __future__ import annotations

import json
import os
import sys

import pika

AMQP_URI = os.environ.get("AMQP_URI", "amqp://guest:guest@localhost:5672/")
QUEUE = os.environ.get("SUBSCRIBER_QUEUE", "example-crm.conversation-events")


def main(exchange: str = "conversations.events", routing_key: str = "conversation_created") -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URI))
    channel = connection.channel()
    channel.exchange_declare(exchange, "topic", durable=True)  # same arguments mailroom uses
    channel.queue_declare(QUEUE, durable=True)
    channel.queue_bind(QUEUE, exchange, routing_key)
    channel.basic_qos(prefetch_count=20)
    seen: set[tuple[str, str]] = set()  # use a table in your own database in real life

    def on_event(ch, method, properties, body):
        envelope = json.loads(body)
        key = (envelope["source"], envelope["id"])
        if key not in seen:
            seen.add(key)
            print(f"{envelope['type']} {envelope['subject']}: {json.dumps(envelope['data'])[:200]}", flush=True)
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(QUEUE, on_event)
    print(f"waiting for {exchange} / {routing_key} on queue {QUEUE} (Ctrl-C to stop)", flush=True)
    try:
        channel.start_consuming()
    except KeyboardInterrupt:
        channel.stop_consuming()
    connection.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
