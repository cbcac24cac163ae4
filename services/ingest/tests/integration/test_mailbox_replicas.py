"""Two ingest replicas (two real service processes on one database) and one Dovecot mailbox added
through the API: each message is fetched and stored once, by the replica holding the mailbox's
lease; when that replica is killed, the other takes the mailbox over once the lease expires."""

from __future__ import annotations

import sys

import pytest
import yaml
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from mailroom_shared.config import nameko_config
from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import INGEST
from mailroom_testing.stack import free_port
from mailroom_testing.subscriber import EventSubscriber

pytestmark = pytest.mark.integration

CHANNEL = "support@mailroom.test"


def email(n: int) -> bytes:
    return (f"From: Customer <c{n}@example.org>\r\nTo: {CHANNEL}\r\nSubject: replica {n}\r\n"
            f"Message-ID: <replica-{n}@example.org>\r\n\r\nHello {n}.\r\n").encode()


def lease_owner(stack, mailbox_id: str) -> str | None:
    engine = create_engine(stack.database_urls["ingest"])
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT lease_owner FROM mailbox_cursors WHERE mailbox_id = :id"),
                                      {"id": mailbox_id}).scalar()
    finally:
        engine.dispose()


def test_two_replicas_fetch_each_message_once_and_the_survivor_takes_over(stack_factory, amqp_uri, dovecot):
    with dovecot.client() as client:
        for n in range(30):
            client.append("INBOX", email(n))
    with EventSubscriber(amqp_uri, [("ingest.events", "message_received")]) as events:
        stack = stack_factory([INGEST], extra_env={
            "INGEST_MAILBOX_SECRET_KEY": Fernet.generate_key().decode(), "INGEST_IMAP_POLL_SECONDS": "0.5",
            "INGEST_PARSE_WORKERS": "1",  # two replicas on a small machine: keep their event loops turning
            "INGEST_IMAP_LEASE_SECONDS": "5", "INGEST_IMAP_ALLOW_PLAINTEXT": "true"})
        second_port = free_port()
        config = stack.workdir / "nameko-ingest-2.yaml"
        config.write_text(yaml.safe_dump(nameko_config(stack.amqp_uri, f"127.0.0.1:{second_port}")))
        stack.start_process("ingest-2", [sys.executable, "-m", "mailroom_shared.service_process", "--config",
                                         str(config), "ingest.service"], port=second_port)
        publish_event(stack.amqp_uri, "inbox_updated", "inbox-1", {
            "inbox_id": "inbox-1", "name": "Support", "channel_addresses": [CHANNEL], "member_emails": []})
        stack.eventually(lambda: stack.get("/health/ingest")[1].get("channels") == 1)
        status, mailbox = stack.post("/api/ingest/mailboxes", {
            "address": CHANNEL, "host": dovecot.host, "port": dovecot.port, "tls": "none", "username": dovecot.user,
            "auth": "password", "password": dovecot.password})
        assert status == 201, mailbox
        received = events.wait_for("message_received", count=30, timeout=90)
        assert sorted(e["data"]["subject"] for e in received) == sorted(f"replica {n}" for n in range(30))
        view = stack.eventually(lambda: (v := stack.get(f"/api/ingest/mailboxes/{mailbox['id']}")[1])
                                ["status"]["messages_fetched"] >= 30 and v)
        assert view["status"]["messages_fetched"] == 30  # fetched once in all: never by both replicas

        holder_pid = int(lease_owner(stack, mailbox["id"]).rsplit(":", 2)[1])
        names = {stack.processes[name].pid: name for name in ("ingest", "ingest-2")}
        assert holder_pid in names, (holder_pid, names)
        survivor = next(name for name in names.values() if name != names[holder_pid])
        stack.kill_process(names[holder_pid])  # SIGKILL: no clean stop, the lease just runs out
        dovecot.deliver(email(99))
        [late] = [e for e in events.wait_for("message_received", count=31, timeout=60)
                  if e["data"]["subject"] == "replica 99"]
        assert late["data"]["via"] == "imap"
        assert len(events.of_type("message_received")) == 31
    owner_pid = int(lease_owner(stack, mailbox["id"]).rsplit(":", 2)[1])
    assert owner_pid == stack.processes[survivor].pid
