"""The external subscriber: another system's durable queue bound to every `<service>.events`
exchange (routing key `#`) before the run, consumed with manual acks by a pika connection that
reconnects when the broker goes away (the run restarts it). Every delivery is recorded: its
CloudEvents id, type, the broker's `redelivered` flag and the few data fields the checks need.

A CloudEvents id seen twice is a redelivery. Without the broker's `redelivered` flag it was
*published* twice (an outbox relay that crashed or lost its connection between the broker's
confirm and marking the row published: at-least-once by design); with it, the broker handed it
to us again because our ack did not reach it before it restarted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass

import pika
from pika.exceptions import AMQPError

from mailroom_shared.messaging.topology import PRODUCERS

QUEUE = "chaos.external-subscriber"
KEEP = ("intake_id", "message_id", "rfc_message_id", "conversation_id", "contact_id", "emails", "direction",
        "entry_id", "email_id", "inbox_id", "kind")

log = logging.getLogger("chaos.subscriber")


@dataclass(frozen=True)
class Delivery:
    event_id: str
    routing_key: str
    exchange: str
    redelivered: bool
    at: float  # monotonic
    data: dict


def declare(amqp_uri: str) -> None:
    """The durable queue and its bindings; call before anything publishes."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    try:
        channel = connection.channel()
        channel.queue_declare(QUEUE, durable=True)
        for producer in PRODUCERS:
            channel.exchange_declare(f"{producer}.events", "topic", durable=True)
            channel.queue_bind(QUEUE, f"{producer}.events", "#")
    finally:
        connection.close()


class ExternalSubscriber:
    def __init__(self, amqp_uri: str):
        self.amqp_uri = amqp_uri
        self.deliveries: list[Delivery] = []
        self.connections = 0
        self.disconnects: list[tuple[float, str]] = []
        self.undecodable = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos-subscriber")

    def start(self) -> ExternalSubscriber:
        declare(self.amqp_uri)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.deliveries)

    def _run(self) -> None:
        while not self._stop.is_set():
            connection = None
            try:
                params = pika.URLParameters(self.amqp_uri)
                params.heartbeat = 10
                params.blocked_connection_timeout = 30
                connection = pika.BlockingConnection(params)
                self.connections += 1
                channel = connection.channel()
                channel.basic_qos(prefetch_count=200)
                channel.basic_consume(QUEUE, self._on_message)
                while not self._stop.is_set():
                    connection.process_data_events(time_limit=0.2)
            except (AMQPError, OSError) as exc:  # the broker went away: reconnect
                self.disconnects.append((time.monotonic(), repr(exc)[:200]))
                time.sleep(0.5)
            finally:
                if connection is not None and connection.is_open:
                    with contextlib.suppress(AMQPError, OSError):
                        connection.close()

    def _on_message(self, channel, method, properties, body) -> None:
        try:
            envelope = json.loads(body)
            data = envelope.get("data") or {}
            record = Delivery(event_id=str(envelope.get("id")), routing_key=method.routing_key,
                              exchange=method.exchange, redelivered=bool(method.redelivered), at=time.monotonic(),
                              data={k: data[k] for k in KEEP if k in data})
        except (ValueError, AttributeError):
            self.undecodable += 1
            record = None
        if record is not None:
            with self.lock:
                self.deliveries.append(record)
        channel.basic_ack(method.delivery_tag)

    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)
