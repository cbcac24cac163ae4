"""Generates docs/events.asyncapi.yaml from the event catalogue and docs/openapi.yaml from the
services' operation tables. tests/test_docs.py fails when the committed files are stale."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from mailroom_shared.events.catalogue import CATALOGUE, EVENT_NAMES, exchange_of, spec_for, versions
from mailroom_shared.messaging.topology import SUBSCRIPTIONS

SERVICES_WITH_HTTP = ("ingest", "contacts", "conversations", "outbound", "notifier")

# The data schemas are JSON Schema (draft-07, which AsyncAPI 2.x's default schema format extends):
# apispec renders them with its OpenAPI 3.1 dialect, where a field that may be null is
# `type: [..., "null"]`. OpenAPI 3.0's `nullable: true` means nothing to a JSON Schema validator, so
# a subscriber validating against it rejected every real event with a null field.
DATA_SCHEMA_DIALECT = "3.1.0"
PAYLOAD_SCHEMA_FORMAT = "application/schema+json;version=draft-07"
TRACEPARENT_PATTERN = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"

ENVELOPE = {
    "type": "object",
    "description": "CloudEvents 1.0 structured JSON envelope. De-duplicate on source + id.",
    "required": ["specversion", "id", "source", "type", "time", "subject", "datacontenttype", "data"],
    "properties": {
        "specversion": {"type": "string", "const": "1.0"},
        "id": {"type": "string", "format": "uuid"},
        "source": {"type": "string", "examples": ["mailroom/conversations"]},
        "type": {"type": "string", "examples": ["mailroom.conversation_created.v1"]},
        "time": {"type": "string", "format": "date-time"},
        "subject": {"type": "string", "description": "id of the entity the event is about"},
        "datacontenttype": {"type": "string", "const": "application/json"},
        "traceparent": {
            "type": "string", "pattern": TRACEPARENT_PATTERN,
            "description": "CloudEvents distributed-tracing extension: a W3C Trace Context `traceparent`. "
                           "Every event of one inbound message's flow (intake, contact, conversation, "
                           "notifications) carries the same trace id; an event published while handling "
                           "another carries that event's trace id. Optional: events published before it "
                           "existed have none.",
            "examples": ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]},
    },
}


def _schema_name(spec_name: str, version: int) -> str:
    return "".join(part.title() for part in spec_name.split("_")) + f"V{version}"


def message_id(event) -> str:
    """Every (name, version) is its own message: `contact_created.v1`."""
    return f"{event.name}.v{event.version}"


def asyncapi() -> dict:
    spec = APISpec("events", "1", DATA_SCHEMA_DIALECT, plugins=[MarshmallowPlugin()])
    for event in CATALOGUE.values():
        spec.components.schema(_schema_name(event.name, event.version), schema=event.schema)
    schemas = spec.to_dict()["components"]["schemas"]
    schemas["Envelope"] = ENVELOPE
    channels, messages = {}, {}
    for event in sorted(CATALOGUE.values(), key=lambda e: (e.producer, e.name, e.version)):
        data_name = _schema_name(event.name, event.version)
        messages[message_id(event)] = {
            "messageId": message_id(event), "name": event.name, "title": event.cloudevents_type,
            "summary": event.summary, "contentType": "application/json",
            "schemaFormat": PAYLOAD_SCHEMA_FORMAT,
            "payload": {"allOf": [{"$ref": "#/components/schemas/Envelope"}, {
                "type": "object", "properties": {
                    "type": {"const": event.cloudevents_type},
                    "data": {"$ref": f"#/components/schemas/{data_name}"}}}]},
        }
    for name in sorted(EVENT_NAMES, key=lambda name: (exchange_of(name), name)):
        exchange = exchange_of(name)
        refs = [{"$ref": f"#/components/messages/{message_id(spec_for(name, version))}"} for version in versions(name)]
        consumers = [f"{s.service}.{s.method}" for s in SUBSCRIPTIONS
                     if f"{s.source}.events" == exchange and s.event_type == name]
        channels[f"{exchange}/{name}"] = {
            "description": f"Topic exchange `{exchange}`, routing key `{name}`."
                           + (f" Versions: {', '.join(f'v{v}' for v in versions(name))} (the envelope's `type`)."
                              if len(refs) > 1 else "")
                           + (f" Internal subscribers: {', '.join(consumers)}." if consumers else ""),
            "bindings": {"amqp": {"is": "routingKey", "exchange": {
                "name": exchange, "type": "topic", "durable": True, "autoDelete": False}}},
            "subscribe": {"operationId": f"on_{name}", "message": refs[0] if len(refs) == 1 else {"oneOf": refs}},
        }
    return {
        "asyncapi": "2.6.0",
        "info": {"title": "mailroom events", "version": "1",
                 "description": "Every event mailroom publishes, one message per version. Bind your own queue "
                                "to `<service>.events` with the routing keys (event names) you want (see README); "
                                "the envelope's `type` (`mailroom.<name>.v<N>`) names the version of its data. "
                                "Generated by `mailroom docs`."},
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {"messages": messages, "schemas": schemas},
    }


# The probes and metrics every service answers (mailroom_shared.kit, observability) on its own HTTP
# port and on its metrics port: for the kubelet and Prometheus, not routed by the ingress.
_PER_PROCESS = ("Answered by every service process on its HTTP port and metrics port (not through the ingress); "
                "no token.")
_HEALTH_BODY = {"type": "object", "required": ["service", "status"], "properties": {
    "service": {"type": "string"}, "status": {"type": "string"},
    "loop_lag_seconds": {"type": "number"}, "checks": {"type": "object", "additionalProperties": True}}}
OPERATIONAL_PATHS = {
    "/health/live": {"get": {
        "tags": ["operations"], "summary": "Liveness: 200 while the process's event loop turns (no I/O)",
        "description": _PER_PROCESS,
        "responses": {code: {"description": description, "content": {"application/json": {"schema": _HEALTH_BODY}}}
                      for code, description in (("200", "alive"), ("503", "the event loop stalled"))}}},
    "/health/ready": {"get": {
        "tags": ["operations"],
        "summary": "Readiness: database reachable at the expected schema revision, broker connected, "
                   "consumers attached",
        "description": _PER_PROCESS + " The failing checks are named in `checks`.",
        "responses": {code: {"description": description, "content": {"application/json": {"schema": _HEALTH_BODY}}}
                      for code, description in (("200", "ready"), ("503", "not ready"))}}},
    "/metrics": {"get": {
        "tags": ["operations"], "summary": "Prometheus metrics of this process (docs/operations.md)",
        "description": _PER_PROCESS,
        "responses": {"200": {"description": "Prometheus text exposition format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
}


def openapi() -> dict:
    spec = APISpec("mailroom HTTP API", "1", "3.0.3", plugins=[MarshmallowPlugin()],
                   info={"description": "Generated by `mailroom docs` from each service's operation table."})
    for service in SERVICES_WITH_HTTP:
        try:
            module = importlib.import_module(f"{service}.openapi")
        except ModuleNotFoundError:
            continue
        module.register(spec)
    for path, operations in OPERATIONAL_PATHS.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def render(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)


def generate(output: Path) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in (("events.asyncapi.yaml", asyncapi()), ("openapi.yaml", openapi())):
        path = output / name
        path.write_text(render(document))
        written.append(path)
    return written
