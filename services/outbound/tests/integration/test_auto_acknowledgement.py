"""Automatic acknowledgement per inbox across real processes (outbound, conversations, ingest;
RabbitMQ, PostgreSQL) and a real SMTP relay (aiosmtpd): off by default; once a member enables it,
a new conversation's first message is answered to its Return-Path as an RFC 3834 auto-reply,
threaded to it; auto-replies, list mail, mail without a Return-Path and a sender acknowledged
within the period get nothing."""

import uuid

import pytest

from mailroom_testing.specs import CONVERSATIONS, INGEST, OUTBOUND
from mailroom_testing.team import SUPPORT, SUPPORT_INBOX, MailSink, relay_env, running, start_with_inboxes
from mailroom_testing.tokens import NO_AUTH, auth

pytestmark = pytest.mark.integration

INBOXES = SUPPORT_INBOX
MEMBER = auth("agent-1")


class Relay(MailSink):
    def acknowledgements(self) -> list[dict]:
        return [m for m in self.accepted if m["message"]["Auto-Submitted"] == "auto-replied"]


@pytest.fixture
def relay():
    with running(Relay()) as handler:
        yield handler, handler.port


@pytest.fixture
def stack(stack_factory, relay, tmp_path):
    started = start_with_inboxes(stack_factory, [OUTBOUND, CONVERSATIONS, INGEST], INBOXES, tmp_path,
                                 relay_env(relay[0]))
    started.support = started.inbox_id
    return started


def mail(sender, subject, *extra):
    message_id = f"{uuid.uuid4().hex}@example.com"
    lines = [f"From: {sender}", f"To: {SUPPORT}", f"Subject: {subject}", f"Message-ID: <{message_id}>",
             "Date: Wed, 25 Nov 2026 10:00:00 +0000", *extra, "Content-Type: text/plain; charset=utf-8", "",
             "Hello", ""]
    return "\r\n".join(lines).encode(), message_id


def deliver(stack, raw):
    def post():
        status, body = stack.post(f"/api/ingest/channels/{SUPPORT}/messages", raw=raw)
        return body if status < 300 else None
    return stack.eventually(post, timeout=30)


def conversations(stack):
    status, page = stack.get(f"/api/inboxes/{stack.support}/conversations?view=all&limit=50")
    return page["items"] if status == 200 else []


def test_a_new_conversation_is_acknowledged_once_to_its_return_path(stack, relay):
    handler, _ = relay
    path = f"/api/outbound/inboxes/{stack.support}/auto-acknowledgement"
    assert stack.get(path)[1]["enabled"] is False  # off by default
    assert stack.request("PUT", path, {"enabled": True, "text": "x"}, headers=NO_AUTH)[0] == 401
    assert stack.request("PUT", path, {"enabled": True}, headers=MEMBER)[0] == 400  # no text
    assert stack.request("PUT", path, {"enabled": True, "text": "{{ nope.x }}"}, headers=MEMBER)[0] == 400
    assert stack.request("PUT", path, {"enabled": True, "text": "x", "period_hours": -1}, headers=MEMBER)[0] == 400
    assert stack.request("PUT", path, "[]", headers=MEMBER)[0] == 400
    status, saved = stack.request("PUT", path, {
        "enabled": True, "subject": "We got your message: {{ conversation.subject }}",
        "text": "Hello {{ contact.first_name }}, {{ inbox.name }} will answer soon."}, headers=MEMBER)
    assert status == 200 and saved["enabled"] is True and saved["updated_by"] == "agent-1", saved
    assert stack.get(path, headers=MEMBER)[1]["subject"].startswith("We got your message")

    raw, first_id = mail("Ada Lovelace <ada@example.com>", "Where is my order?", "Return-Path: <ada@example.com>")
    deliver(stack, raw)
    [ack] = stack.eventually(handler.acknowledgements, timeout=60)
    message = ack["message"]
    assert ack["rcpt_tos"] == ["ada@example.com"] and message["In-Reply-To"] == f"<{first_id}>"
    assert str(message["Subject"]) == "We got your message: Where is my order?"
    assert "Hello Ada, Support will answer soon." in message.get_body(("plain",)).get_content()
    assert message["X-Auto-Response-Suppress"] == "All"

    # none of these is acknowledged: an auto-reply, list mail, no Return-Path, ada again within the period
    for raw, _ in [mail("Bob <bob@example.com>", "Out of office", "Return-Path: <bob@example.com>",
                        "Auto-Submitted: auto-replied"),
                   mail("News <news@lists.example>", "Weekly digest", "Return-Path: <bounce@lists.example>",
                        "List-Id: <weekly.lists.example>"),
                   mail("Dave <dave@example.com>", "No envelope"),
                   mail("Ada Lovelace <ada@example.com>", "Another question", "Return-Path: <ada@example.com>")]:
        deliver(stack, raw)
    stack.eventually(lambda: len(conversations(stack)) >= 5, timeout=60)
    raw, _ = mail("Erin <erin@example.com>", "Hello", "Return-Path: <erin@example.com>")  # after them, answered
    deliver(stack, raw)
    stack.eventually(lambda: any(a["rcpt_tos"] == ["erin@example.com"] for a in handler.acknowledgements()),
                     timeout=60)
    assert sorted(a["rcpt_tos"][0] for a in handler.acknowledgements()) == ["ada@example.com", "erin@example.com"]

    # off again: nothing more
    assert stack.request("PUT", path, {"enabled": False}, headers=MEMBER)[0] == 200
    assert stack.get(path)[1]["enabled"] is False
