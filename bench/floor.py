"""The physical floor of one hop on this machine: a minimal kombu publisher → consumer that inserts
one row per message into PostgreSQL and commits per message.

Same guarantees as one pipeline hop: a durable queue, persistent messages, publisher confirms, a
manual ack after the commit. The publisher and the consumer are separate processes (like two
services); the rate is measured from the first publish to the last commit.
"""

from __future__ import annotations

import json
import multiprocessing
import time
import uuid

import psycopg2
from kombu import Connection, Exchange, Producer, Queue

QUEUE = "bench.floor"
BODY_PADDING = "x" * 900  # ~1 KB bodies, the size of a small event envelope


def _consume(amqp_uri: str, dsn: str, count: int, ready, result) -> None:
    db = psycopg2.connect(dsn)
    cursor = db.cursor()
    cursor.execute("CREATE TABLE floor (id bigserial PRIMARY KEY, event_id text NOT NULL UNIQUE,"
                   " body jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now())")
    db.commit()
    done = {"n": 0, "last": 0.0}
    with Connection(amqp_uri) as connection:
        queue = Queue(QUEUE, Exchange(""), routing_key=QUEUE, durable=True)
        channel = connection.channel()
        queue(channel).declare()

        def on_message(body, message):
            cursor.execute("INSERT INTO floor (event_id, body) VALUES (%s, %s)", (body["id"], json.dumps(body)))
            db.commit()
            message.ack()
            done["n"] += 1
            done["last"] = time.monotonic()

        with connection.Consumer(queue, callbacks=[on_message], accept=["json"], prefetch_count=64):
            ready.set()
            while done["n"] < count:
                connection.drain_events(timeout=60)
    db.close()
    result.put(done["last"])


def _publish(amqp_uri: str, count: int, result) -> None:
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        producer = Producer(connection.channel())
        started = time.monotonic()
        for i in range(count):
            producer.publish({"id": str(uuid.uuid4()), "n": i, "pad": BODY_PADDING}, exchange="", routing_key=QUEUE,
                             serializer="json", delivery_mode=2)
        result.put((started, time.monotonic()))


def measure(amqp_uri: str, dsn: str, count: int) -> dict:
    dsn = dsn.replace("postgresql+psycopg2://", "postgresql://")
    context = multiprocessing.get_context("fork")
    ready, consumed, published = context.Event(), context.Queue(), context.Queue()
    consumer = context.Process(target=_consume, args=(amqp_uri, dsn, count, ready, consumed), daemon=True)
    consumer.start()
    if not ready.wait(30):
        raise RuntimeError("floor consumer did not start")
    publisher = context.Process(target=_publish, args=(amqp_uri, count, published), daemon=True)
    publisher.start()
    started, publish_done = published.get(timeout=600)
    last_commit = consumed.get(timeout=600)
    publisher.join(10)
    consumer.join(10)
    elapsed = last_commit - started
    return {"messages": count, "seconds": round(elapsed, 3), "msgs_per_s": round(count / elapsed, 1),
            "publish_msgs_per_s": round(count / (publish_done - started), 1)}
