"""Logs and metrics without servers: secrets never reach a log line (plain or JSON), JSON lines
name the service and the event handled, the logging config follows MAILROOM_LOG_FORMAT, and the
kit counts handler outcomes and HTTP requests."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest
from nameko.testing.services import worker_factory
from prometheus_client import REGISTRY
from sqlalchemy import MetaData
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from mailroom_shared import observability
from mailroom_shared.config import nameko_config
from mailroom_shared.db import Database
from mailroom_shared.events.envelope import build_envelope
from mailroom_shared.kit import consumes, endpoint, service_base
from mailroom_shared.messaging.idempotency import processed_events_table
from mailroom_shared.messaging.outbox import outbox_table
from mailroom_shared.observability import JsonFormatter, PlainFormatter, Redactor, log_context

ENV = {
    "MAILROOM_JWT_SECRET": "jwt-secret-value-0123456789",
    "OUTBOUND_SMTP_PASSWORD": "smtp-pass-word-42",
    "AMQP_PASSWORD": "amqp-secret-pw",
    "LOG_LEVEL": "INFO",
}
LEAKS = [
    "connecting to amqp://contacts:amqp-secret-pw@broker:5672/mailroom",
    "db postgresql://contacts:another-db-password@db:5432/contacts",
    "request with Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
    "smtp login failed for mailer with password=smtp-pass-word-42",
    "config {'jwt': 'jwt-secret-value-0123456789'}",
    'payload {"password": "hunter22", "token": "tok-123456"}',
]
SECRETS = ["amqp-secret-pw", "another-db-password", "eyJhbGciOiJIUzI1NiJ9", "smtp-pass-word-42",
           "jwt-secret-value-0123456789", "hunter22", "tok-123456"]


@pytest.fixture
def redactor(monkeypatch):
    redactor = Redactor(ENV)
    monkeypatch.setattr(observability, "_redactor", redactor)
    return redactor


def emit(formatter: logging.Formatter, message: str, *args, exc: BaseException | None = None) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.observability.{id(formatter)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    if exc is not None:
        try:
            raise exc
        except type(exc):
            logger.exception(message, *args)
    else:
        logger.warning(message, *args)
    return stream.getvalue()


@pytest.mark.parametrize("formatter", [PlainFormatter(), JsonFormatter()], ids=["plain", "json"])
def test_secrets_never_reach_a_log_line(redactor, formatter):
    for leak in LEAKS:
        line = emit(formatter, "%s", leak)
        assert not [s for s in SECRETS if s in line], line
        assert "***" in line
    # in an exception's text too
    line = emit(formatter, "failed", exc=RuntimeError("cannot connect to amqp://u:amqp-secret-pw@h/v"))
    assert "amqp-secret-pw" not in line and "RuntimeError" in line


def test_redaction_keeps_what_is_not_a_secret(redactor):
    text = "delivered <id@example.com> to ada@example.com via smtp-relay.example.com:587 in 0.4 s"
    assert redactor(text) == text


def test_json_lines_name_the_service_and_the_event(redactor, monkeypatch):
    monkeypatch.setattr(observability, "SERVICE_NAME", "contacts")
    envelope = build_envelope("inbox_updated", "inbox-1", {"inbox_id": "inbox-1", "name": "Support",
                                                           "channel_addresses": [], "member_emails": []})
    envelope["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    envelope["data"]["conversation_id"] = "conv-9"
    with log_context(handler="handle_inbox_updated", **observability.envelope_fields(envelope)):
        line = json.loads(emit(JsonFormatter(), "handled %s", "it"))
    assert line["service"] == "contacts" and line["message"] == "handled it" and line["level"] == "WARNING"
    assert line["event_id"] == envelope["id"] and line["event_type"] == envelope["type"]
    assert line["event_source"] == "mailroom/conversations" and line["subject"] == "inbox-1"
    assert line["handler"] == "handle_inbox_updated" and line["conversation_id"] == "conv-9"
    assert line["correlation_id"] == envelope["traceparent"]
    outside = json.loads(emit(JsonFormatter(), "later"))
    assert "event_id" not in outside and outside["service"] == "contacts"


@pytest.mark.parametrize("fmt, formatter", [("json", JsonFormatter), ("plain", PlainFormatter), (None, PlainFormatter)])
def test_nameko_config_logs_in_the_format_asked_for(monkeypatch, fmt, formatter):
    if fmt is None:
        monkeypatch.delenv("MAILROOM_LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("MAILROOM_LOG_FORMAT", fmt)
    logging_config = nameko_config("amqp://x", "127.0.0.1:1")["LOGGING"]
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logging.config.dictConfig(logging_config)
        (handler,) = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
        assert type(handler.formatter) is formatter
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_an_unknown_log_format_is_refused(monkeypatch):
    from mailroom_shared.config import ConfigError

    monkeypatch.setenv("MAILROOM_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="MAILROOM_LOG_FORMAT"):
        nameko_config("amqp://x", "127.0.0.1:1")


# --- the kit counts handler outcomes and HTTP requests ------------------------------------------

metadata = MetaData()
Base = service_base("obstest", outbox_table(metadata), processed_events_table(metadata))


class ObservedService(Base):
    name = "obstest"

    @consumes("conversations", "inbox_updated")
    def handle_inbox_updated(self, session, data, envelope):
        if data["name"] == "boom":
            raise RuntimeError("handler failed")

    @endpoint("GET", "/health/obstest", auth=False)
    def health(self, request):
        return {"ok": True}


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def inbox_updated(name: str) -> dict:
    return build_envelope("inbox_updated", "inbox-1", {"inbox_id": "inbox-1", "name": name,
                                                       "channel_addresses": [], "member_emails": []})


def test_handlers_are_counted_by_outcome(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'obs.db'}")
    metadata.create_all(database.engine)
    service = worker_factory(ObservedService, db=database)
    labels = {"service": "obstest", "handler": "handle_inbox_updated", "event": "inbox_updated"}
    outcomes = ("processed", "duplicate", "failed")
    before = {o: sample("mailroom_handler_events_total", **labels, outcome=o) for o in outcomes}
    durations = sample("mailroom_handler_duration_seconds_count", **labels)
    event = inbox_updated("Support")
    service.handle_inbox_updated(event)
    service.handle_inbox_updated(event)  # redelivered
    with pytest.raises(RuntimeError):
        service.handle_inbox_updated(inbox_updated("boom"))
    after = {o: sample("mailroom_handler_events_total", **labels, outcome=o) for o in before}
    assert {o: after[o] - before[o] for o in before} == {"processed": 1, "duplicate": 1, "failed": 1}
    assert sample("mailroom_handler_failures_total", **labels, error="RuntimeError") >= 1
    assert sample("mailroom_handler_duration_seconds_count", **labels) - durations == 3
    database.dispose()


def test_http_requests_are_timed_by_route_and_status(tmp_path):
    service = worker_factory(ObservedService)
    labels = {"service": "obstest", "method": "GET", "route": "/health/obstest", "status": "200"}
    before = sample("mailroom_http_request_duration_seconds_count", **labels)
    response = service.health(Request(EnvironBuilder(path="/health/obstest").get_environ()))
    assert response.status_code == 200
    assert sample("mailroom_http_request_duration_seconds_count", **labels) == before + 1


def test_the_services_own_metrics_are_ready_to_count():
    for metric in (observability.INTAKE_MESSAGES, observability.DELIVERIES, observability.IMAP_POLLS,
                   observability.QUARANTINED, observability.DELIVERY_DURATION, observability.IMAP_LAST_SUCCESS):
        assert metric._name.startswith("mailroom_")
    observability.imap_polled("support@example.com", True)
    assert sample("mailroom_imap_polls_total", mailbox="support@example.com", outcome="ok") >= 1
    assert sample("mailroom_imap_last_success_timestamp_seconds", mailbox="support@example.com") > 0
