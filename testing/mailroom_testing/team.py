"""What the end-to-end tests of a team's inbox start again and again: an SMTP server standing in
for the relay or the customer's mail server (MailSink), and the services with the team's inboxes
file (start_with_inboxes)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from email.parser import BytesParser
from pathlib import Path

from aiosmtpd.controller import Controller

from mailroom_testing.stack import Stack, free_port

SUPPORT = "support@mailroom.test"
# one team inbox, Support, whose member is agent-1 (CONVERSATIONS_INBOXES_FILE)
SUPPORT_INBOX = f"""
inboxes:
  - key: support
    name: Support
    channels:
      - {{address: {SUPPORT}, name: Support Team, primary: true}}
    members:
      - {{user_id: agent-1, email: agent@mailroom.test}}
"""


class MailSink:
    """An SMTP server (aiosmtpd on 127.0.0.1:`port`) that records every message it accepts in
    `accepted` (mail_from, rcpt_tos and the parsed message) and refuses the addresses in `refuse` at
    RCPT TO (550 5.1.1, as a relay refuses an unknown mailbox)."""

    def __init__(self):
        self.refuse: set[str] = set()
        self.accepted: list[dict] = []
        self.port: int | None = None
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's name
        if address.lower() in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        message = BytesParser(policy=policy.default).parsebytes(envelope.original_content or envelope.content)
        with self._lock:
            self.accepted.append({"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                                  "message": message})
            count = len(self.accepted)
        return f"250 2.0.0 Ok: queued as Q{count:04d}"


@contextmanager
def running(sink: MailSink) -> Iterator[MailSink]:
    """`sink` listening (on `sink.port`) inside the block."""
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    sink.port = controller.port
    try:
        yield sink
    finally:
        controller.stop()


def start_with_inboxes(stack_factory, services, inboxes_yaml: str, workdir: Path, extra_env: dict | None = None,
                       wait_for: str | None = "support") -> Stack:
    """`stack_factory(services)` with CONVERSATIONS_INBOXES_FILE holding `inboxes_yaml` (written in
    `workdir`); when `wait_for` names an inbox key, returns once conversations lists that inbox,
    its id in `stack.inbox_id`."""
    inboxes = workdir / "inboxes.yaml"
    inboxes.write_text(inboxes_yaml)
    stack = stack_factory(services, extra_env={"CONVERSATIONS_INBOXES_FILE": str(inboxes), **(extra_env or {})})
    if wait_for is not None:
        def inbox_id():
            status, body = stack.get("/api/inboxes")
            return next((i["id"] for i in body["items"] if i["key"] == wait_for), None) if status == 200 else None
        stack.inbox_id = stack.eventually(inbox_id, timeout=30)
    return stack


def relay_env(sink: MailSink, **extra: str) -> dict[str, str]:
    """Outbound's SMTP relay settings pointing at `sink`, with the test-sized retries and polls of
    these tests (`extra` adds or overrides variables)."""
    return {"OUTBOUND_SMTP_HOST": "127.0.0.1", "OUTBOUND_SMTP_PORT": str(sink.port),
            "OUTBOUND_POLL_SECONDS": "0.2", "MAILROOM_MESSAGE_ID_DOMAIN": "mailroom.test", **extra}
