"""The published event contract, checked against what a running stack really publishes.

Before a test's stack starts, `bind_tap` binds a queue of the test's own (TAP_QUEUE, never consumed
by a service) to every events exchange of its vhost with `#`, so after the test it holds every event
the stack published. `EventContract` validates each against its message's payload schema in the generated
AsyncAPI document (what `mailroom docs` writes to docs/events.asyncapi.yaml for subscribers), with
jsonschema: a subscriber validating our events with that document must accept every one of them.
The document is generated from the catalogue as the tests run (tests/test_docs.py checks the
committed file is the same), so a catalogue change is checked before the file is regenerated.

Messages the test itself published through mailroom_testing.publishing (hostile, malformed,
replayed on purpose) carry TEST_PUBLISHED_HEADER and are not the stack's: they are skipped.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pika
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from mailroom_shared.messaging.topology import PRODUCERS, events_exchange

REPO = Path(__file__).resolve().parents[2]
ASYNCAPI_DOCUMENT = REPO / "docs" / "events.asyncapi.yaml"
DOCUMENT_URI = "urn:mailroom:events.asyncapi"
TEST_PUBLISHED_HEADER = "x-mailroom-test-published"
TAP_QUEUE = "mailroom-test.contract-tap"


@dataclass(frozen=True)
class RecordedEvent:
    exchange: str
    routing_key: str
    body: bytes
    headers: dict

    @property
    def envelope(self):
        return json.loads(self.body)


class EventContract:
    """The AsyncAPI document's messages, each a JSON Schema (draft-07) validator of the envelope."""

    def __init__(self, document: dict):
        self.document = document
        self.messages = document["components"]["messages"]
        self.registry = Registry().with_resource(DOCUMENT_URI, Resource(document, specification=DRAFT7))
        # routing key (event name) -> the exchange its channel is bound to
        self.exchanges = {name.split("/", 1)[1]: channel["bindings"]["amqp"]["exchange"]["name"]
                          for name, channel in document["channels"].items()}

    @classmethod
    @functools.cache
    def published(cls) -> EventContract:
        """The document `mailroom docs` generates from the catalogue now (the committed file when
        the CLI is not installed)."""
        try:
            from mailroom_cli.docs import asyncapi
        except ImportError:
            return cls.from_file(ASYNCAPI_DOCUMENT)
        return cls(asyncapi())

    @classmethod
    def from_file(cls, path: Path = ASYNCAPI_DOCUMENT) -> EventContract:
        return cls(yaml.safe_load(path.read_text()))

    @functools.cache  # noqa: B019 - one contract per document, kept for the session
    def validator(self, message_id: str) -> jsonschema.Draft7Validator:
        schema = {"$ref": f"{DOCUMENT_URI}#/components/messages/{message_id}/payload"}
        return jsonschema.Draft7Validator(schema, registry=self.registry,
                                          format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)

    def problems(self, envelope, routing_key: str | None = None, exchange: str | None = None) -> list[str]:
        """What is wrong with `envelope` as published on `exchange` with `routing_key` (nothing: [])."""
        if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
            return [f"not a CloudEvents envelope with a type: {json.dumps(envelope)[:200]}"]
        cloudevents_type = envelope["type"]
        name, _, version = cloudevents_type.removeprefix("mailroom.").rpartition(".")
        message_id = f"{name}.{version}"
        if message_id not in self.messages:
            return [f"{cloudevents_type}: no message {message_id!r} in the AsyncAPI document "
                    f"(an event or version the catalogue does not have)"]
        found = []
        if routing_key is not None and routing_key != name:
            found.append(f"{cloudevents_type} published with routing key {routing_key!r}, not {name!r}")
        if exchange is not None and self.exchanges.get(name) != exchange:
            found.append(f"{cloudevents_type} published on {exchange!r}, "
                         f"its channel is on {self.exchanges.get(name)!r}")
        for error in sorted(self.validator(message_id).iter_errors(envelope), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(part) for part in error.absolute_path) or "(envelope)"
            found.append(f"{cloudevents_type} {envelope.get('id')}: {where}: {error.message}")
        return found


def bind_tap(amqp_uri: str) -> None:
    """Bind TAP_QUEUE to every events exchange of `amqp_uri`'s vhost (declared as the topology
    declares them), before anything publishes. Idempotent."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    try:
        channel = connection.channel()
        channel.queue_declare(TAP_QUEUE, durable=True)
        for producer in PRODUCERS:
            exchange = events_exchange(producer)
            channel.exchange_declare(exchange.name, exchange.type, durable=exchange.durable)
            channel.queue_bind(TAP_QUEUE, exchange.name, "#")
    finally:
        connection.close()


def drain_tap(amqp_uri: str) -> list[RecordedEvent]:
    """Every message TAP_QUEUE of `amqp_uri`'s vhost holds, taken off it."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    recorded = []
    try:
        channel = connection.channel()
        while True:
            method, properties, body = channel.basic_get(TAP_QUEUE, auto_ack=True)
            if method is None:
                return recorded
            recorded.append(RecordedEvent(method.exchange, method.routing_key, body, dict(properties.headers or {})))
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:  # never bound in this vhost
            return recorded
        raise
    finally:
        if connection.is_open:
            connection.close()


def check_published_events(amqp_uri: str, contract: EventContract | None = None) -> tuple[int, list[str]]:
    """(how many of the stack's events were checked, the problems found) for the vhost of `amqp_uri`."""
    contract = contract or EventContract.published()
    checked, problems = 0, []
    for event in drain_tap(amqp_uri):
        if event.headers.get(TEST_PUBLISHED_HEADER):
            continue
        checked += 1
        try:
            envelope = event.envelope
        except ValueError:
            problems.append(f"{event.exchange}/{event.routing_key}: not JSON: {event.body[:200]!r}")
            continue
        problems += contract.problems(envelope, event.routing_key, event.exchange)
    return checked, problems
