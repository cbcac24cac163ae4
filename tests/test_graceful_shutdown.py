"""SIGTERM in the middle of a busy queue: in-flight work finishes and is acknowledged, nothing
half-done is published, the process exits 0 well within Kubernetes' 30 s grace period, and after
a restart no message is delivered a second time. A second signal during the stop (a terminal's
Ctrl-C reaching the process group plus the parent's SIGTERM) changes nothing."""

import os
import signal
import time
import uuid

import pytest

from mailroom_shared.events.envelope import build_envelope
from mailroom_testing.infra import query_scalar
from mailroom_testing.publishing import publish_envelopes
from mailroom_testing.specs import CONTACTS
from mailroom_testing.subscriber import EventSubscriber

pytestmark = pytest.mark.integration

QUEUE = "evt-ingest-message_received--contacts.handle_message_received"
EMAILS = 300


def message_received(n: int) -> dict:
    sender = f"customer-{n}@shutdown.example"
    return {
        "intake_id": str(uuid.uuid4()), "channel_address": "support@mailroom.test", "via": "smtp",
        "message_id": f"{uuid.uuid4()}@shutdown.example", "subject": f"order {n}", "date": None,
        "sender": {"name": f"Customer {n}", "email": sender}, "attributed_to": {"name": None, "email": sender},
        "to": [{"name": None, "email": "support@mailroom.test"}], "text": "hello", "html": None, "size": 100,
        "raw_url": "/api/ingest/messages/x/raw", "attachments": [], "received_at": "2026-12-06T10:00:00+00:00",
        "flags": {"auto_submitted": False, "bounce": False, "spam": False, "loop": False, "reasons": []},
        "forward": None,
    }


def publish_many(amqp_uri: str, count: int) -> None:
    envelopes = [build_envelope("message_received", data["intake_id"], data)
                 for data in (message_received(n) for n in range(count))]
    publish_envelopes(amqp_uri, envelopes, exchange="ingest.events", routing_key="message_received")


def test_sigterm_mid_batch_finishes_acks_and_exits_cleanly(stack_factory, rabbit_admin):
    stack = stack_factory([CONTACTS])
    database = stack.database_urls["contacts"]
    with EventSubscriber(stack.amqp_uri, [("contacts.events", "contact_created")]) as events:
        publish_many(stack.amqp_uri, EMAILS)
        stack.eventually(lambda: query_scalar(database, "SELECT count(*) FROM contacts") >= 20, timeout=60)

        process = stack.processes["contacts"]
        os.killpg(process.pid, signal.SIGTERM)
        time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)  # the second signal a terminal adds
        started = time.monotonic()
        exit_code = process.wait(30)
        stopped_after = time.monotonic() - started
        log = stack.log("contacts")
        assert exit_code == 0, log[-3000:]
        assert stopped_after < 25, f"took {stopped_after:.1f}s to stop"
        assert "re-send" not in log and "KeyError" not in log, log[-3000:]
        done_before_restart = query_scalar(database, "SELECT count(*) FROM contacts")
        assert done_before_restart < EMAILS, "the stop came too late to be mid-batch; raise EMAILS"

        stack.restart_process("contacts")
        stack.eventually(lambda: query_scalar(database, "SELECT count(*) FROM timeline_entries") == EMAILS, timeout=120)
        stack.eventually(lambda: len(events.of_type("contact_created")) == EMAILS, timeout=30)

    assert query_scalar(database, "SELECT count(*) FROM contacts") == EMAILS
    created_for = [event["data"]["contact_id"] for event in events.of_type("contact_created")]
    assert len(set(created_for)) == EMAILS  # each published once: nothing half-done went out twice
    stats = rabbit_admin.queue_stats(stack.amqp_uri, QUEUE)
    assert stats.get("message_stats", {}).get("redeliver", 0) == 0, stats.get("message_stats")
