"""A test subscriber: binds its own queue to mailroom's exchanges, exactly as another system
would (see examples/subscriber.py), and collects the envelopes it receives."""

from __future__ import annotations

import json
import queue
import threading
import time

import pika


class EventSubscriber:
    def __init__(self, amqp_uri: str, bindings: list[tuple[str, str]]):
        """bindings: (exchange, routing key), e.g. ("conversations.events", "#")."""
        self.amqp_uri = amqp_uri
        self.bindings = bindings
        self.received: list[dict] = []
        self._inbox: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> EventSubscriber:
        self._thread.start()
        if not self._ready.wait(15):
            raise TimeoutError(f"subscriber did not connect: {self._error}")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(self.amqp_uri))
            channel = connection.channel()
            declared = channel.queue_declare("", exclusive=True, auto_delete=True)
            for exchange, routing_key in self.bindings:
                channel.exchange_declare(exchange, "topic", durable=True)
                channel.queue_bind(declared.method.queue, exchange, routing_key)

            def on_message(ch, method, properties, body):
                amqp_properties = {"message_id": properties.message_id, "type": properties.type,
                                   "app_id": properties.app_id, "content_type": properties.content_type,
                                   "delivery_mode": properties.delivery_mode}
                self._inbox.put((method.exchange, method.routing_key, json.loads(body), amqp_properties))
                ch.basic_ack(method.delivery_tag)

            channel.basic_consume(declared.method.queue, on_message)
            self._ready.set()
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.1)
            connection.close()
        except BaseException as exc:  # surfaced by wait_for / __enter__
            self._error = exc
            self._ready.set()

    def _drain(self) -> None:
        while True:
            try:
                exchange, routing_key, envelope, amqp_properties = self._inbox.get_nowait()
            except queue.Empty:
                return
            envelope["_routing_key"] = routing_key
            envelope["_exchange"] = exchange
            envelope["_amqp"] = amqp_properties
            self.received.append(envelope)

    def of_type(self, event_type: str) -> list[dict]:
        self._drain()
        return [e for e in self.received if e["_routing_key"] == event_type]

    def wait_for(self, event_type: str, predicate=lambda envelope: True, timeout: float = 15.0,
                 count: int = 1) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._error:
                raise self._error
            matches = [e for e in self.of_type(event_type) if predicate(e)]
            if len(matches) >= count:
                return matches
            time.sleep(0.05)
        raise AssertionError(
            f"expected {count} {event_type} event(s) within {timeout}s; got "
            f"{[e['_routing_key'] for e in self.received]}")
