"""The inbound pipeline as a team runs it, for the end-to-end tests: ingest (+ its SMTP listener),
contacts and conversations as real processes, with one inbox (support@mailroom.test) whose member
is agent@mailroom.test, and mx.mailroom.test as the MX whose Authentication-Results are trusted."""

import sys

import pytest

from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST
from mailroom_testing.stack import free_port

INBOX_ADDRESS = "support@mailroom.test"
MEMBER = "agent@mailroom.test"
OUR_MX = "mx.mailroom.test"


@pytest.fixture
def mailroom(stack_factory, tmp_path):
    inboxes = tmp_path / "inboxes.yaml"
    inboxes.write_text(f"""
inboxes:
  - key: support
    name: Support
    channels: [{{address: {INBOX_ADDRESS}, name: Support, primary: true}}]
    members: [{{user_id: agent-1, email: {MEMBER}}}]
""")
    smtp_port = free_port()
    stack = stack_factory([INGEST, CONTACTS, CONVERSATIONS], extra_env={
        "CONVERSATIONS_INBOXES_FILE": str(inboxes), "INGEST_SMTP_PORT": str(smtp_port),
        "INGEST_TRUSTED_AUTHSERV_IDS": OUR_MX})
    stack.start_process("smtp", [sys.executable, "-m", "ingest.smtp_listener"], port=smtp_port)
    stack.smtp_port = smtp_port
    # ready when ingest has learnt the inbox's address from conversations' inbox_updated
    stack.eventually(lambda: stack.get("/health/ingest")[1].get("channels") == 1, timeout=30)
    [inbox] = stack.get("/api/inboxes")[1]["items"]
    stack.inbox_id = inbox["id"]
    return stack
