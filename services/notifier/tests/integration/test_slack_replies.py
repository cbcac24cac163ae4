"""Replies in a conversation's Slack thread, against real parts: notifier, conversations and
outbound as processes (their own databases, one vhost), a local Slack Web API
(mailroom_testing.fake_slack) and signed Events API callbacks. The Slack user is resolved by the
email users.info gives; conversations decides what they may do."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook

from mailroom_testing.fake_slack import FakeSlack, signed_event
from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import CONVERSATIONS, NOTIFIER, OUTBOUND
from mailroom_testing.tokens import auth

pytestmark = pytest.mark.integration

CHANNEL = "C0SUPPORT1"
SIGNING_SECRET = "replies-signing-secret-0123456789"  # noqa: S105 - test-only
BOT_TOKEN = "xoxb-replies-token"  # noqa: S105 - test-only
INBOX_ADDRESS = "support@mailroom.test"
USERS = {"U0AGENT": "Agent@Mailroom.test", "U0STRANGER": "stranger@mailroom.test", "U0ADMIN": "admin@mailroom.test",
         "U0NOEMAIL": None}
NOT_A_MEMBER = "not a member of this conversation's inbox"


@pytest.fixture
def slack():
    fake = FakeSlack(token=BOT_TOKEN, users=USERS)
    yield fake
    fake.close()


@pytest.fixture
def stack(stack_factory, slack, tmp_path):
    inboxes = tmp_path / "inboxes.yaml"
    inboxes.write_text(f"""
inboxes:
  - key: support
    name: Support
    channels: [{{address: {INBOX_ADDRESS}, name: Support, primary: true}}]
    members: [{{user_id: agent-1, email: agent@mailroom.test}}]
    access: {{visibility: specific, teams: []}}
""")
    stack = stack_factory([NOTIFIER, CONVERSATIONS, OUTBOUND], extra_env={
        "NOTIFIER_SECRET_KEY": Fernet.generate_key().decode(), "SLACK_API_URL": slack.url,
        "NOTIFIER_POLL_SECONDS": "0.2", "CONVERSATIONS_INBOXES_FILE": str(inboxes),
        "MAILROOM_CONNECTOR_SECRET_KEY": Fernet.generate_key().decode(),
        "MAILROOM_CONNECTOR_ALLOW_PRIVATE_TARGETS": "true", "OUTBOUND_POLL_SECONDS": "0.2",
        # a shared, loaded machine: a start (imports) may hold a loop over the default 1 s
        "MAILROOM_BLOCKING_DETECTION_SECONDS": "5"})
    [inbox] = stack.eventually(lambda: stack.get("/api/inboxes")[1]["items"])
    stack.inbox_id = inbox["id"]
    # the stranger has used mailroom (conversations knows their email) but is no member of the inbox
    assert stack.get("/api/inboxes", headers=auth("stranger-1", email="stranger@mailroom.test"))[0] == 200
    status, _ = stack.post("/api/slack/connections", {
        "inbox_id": inbox["id"], "channel_id": CHANNEL, "bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET})
    assert status == 201
    return stack


def email_conversation(stack) -> tuple[str, str]:
    """A customer's email becomes a conversation; its Slack thread's ts."""
    intake_id = str(uuid.uuid4())
    publish_event(stack.amqp_uri, "message_received", intake_id, {
        "intake_id": intake_id, "channel_address": INBOX_ADDRESS, "via": "smtp",
        "message_id": f"{uuid.uuid4()}@example.com", "subject": "Where is my order?",
        "sender": {"name": "Ada", "email": "ada@example.com"},
        "attributed_to": {"name": "Ada", "email": "ada@example.com"},
        "to": [{"name": None, "email": INBOX_ADDRESS}], "cc": [], "reply_to": [], "in_reply_to": [], "references": [],
        "reply_token": None, "text": "Hello", "html": None, "size": 10,
        "raw_url": f"/api/ingest/messages/{intake_id}/raw",
        "attachments": [], "received_at": dt.datetime.now(dt.UTC).isoformat(),
        "flags": {"auto_submitted": False, "bounce": False, "spam": False, "loop": False, "reasons": []}})
    [conversation] = stack.eventually(
        lambda: stack.get(f"/api/inboxes/{stack.inbox_id}/conversations")[1]["items"], timeout=40)
    root = stack.eventually(lambda: next((m for m in stack.slack.posts(CHANNEL) if m["thread_ts"] is None), None))
    return conversation["id"], root["ts"]


def say(stack, user, text, thread_ts, event_id=None, retry=None):
    event_id = event_id or f"Ev{uuid.uuid4().hex[:10].upper()}"
    raw, headers = signed_event(SIGNING_SECRET, {
        "type": "event_callback", "team_id": "T1", "api_app_id": "A1", "event_id": event_id,
        "event_time": int(time.time()), "event": {"type": "message", "channel": CHANNEL, "user": user, "text": text,
                                                  "ts": f"{time.time():.6f}", "thread_ts": thread_ts}})
    if retry:
        headers["X-Slack-Retry-Num"] = str(retry)
    status, body = stack.request("POST", "/slack/events", raw=raw, headers=headers)
    assert status == 200, body
    return event_id


def comments(stack, conversation_id):
    status, body = stack.get(f"/api/conversations/{conversation_id}")
    assert status == 200, body
    return body["comments"]


def test_notes_become_comments_as_the_slack_user_and_others_are_refused(stack, slack):
    stack.slack = slack
    conversation_id, thread = email_conversation(stack)
    note = say(stack, "U0AGENT", "note: she called, refund agreed with <@U0BOB|bob> &amp; finance", thread)
    say(stack, "U0AGENT", "note: she called, refund agreed with <@U0BOB|bob> &amp; finance", thread,
        event_id=note, retry=1)  # Slack's retry of the same event
    [added] = stack.eventually(lambda: comments(stack, conversation_id), timeout=40)
    assert added["author_user_id"] == "agent-1" and added["body"] == "she called, refund agreed with bob & finance"
    say(stack, "U0STRANGER", "note: I should not be able to", thread)  # known to mailroom, not a member
    say(stack, "U0ADMIN", "note: admins view but do not act", thread)  # a super admin who is not a member
    say(stack, "U0NOEMAIL", "note: who am I", thread)
    say(stack, "U0NOBODY", "note: not even in Slack's directory", thread)
    told = stack.eventually(lambda: len(slack.ephemerals) >= 4 and slack.ephemerals, timeout=40)
    by_user = {e["user"]: e["text"] for e in told}
    assert NOT_A_MEMBER in by_user["U0STRANGER"] and NOT_A_MEMBER in by_user["U0ADMIN"]
    assert "does not know" in by_user["U0NOEMAIL"] and "does not know" in by_user["U0NOBODY"]
    assert all(e["channel"] == CHANNEL and e["thread_ts"] == thread for e in told)
    marker = say(stack, "U0AGENT", "note: last one", thread)
    stack.eventually(lambda: len(comments(stack, conversation_id)) == 2, timeout=40)
    assert [c["author_user_id"] for c in comments(stack, conversation_id)] == ["agent-1", "agent-1"]
    assert marker


def test_a_reply_to_an_email_conversation_is_refused_with_an_ephemeral_and_nothing_is_sent(stack, slack):
    stack.slack = slack
    conversation_id, thread = email_conversation(stack)
    say(stack, "U0AGENT", "We will send it today", thread)
    [told] = stack.eventually(lambda: slack.ephemerals, timeout=40)
    assert told["user"] == "U0AGENT" and "only supported for chat conversations" in told["text"]
    say(stack, "U0AGENT", "note: told the customer by phone", thread)  # handled after the reply: it is settled
    stack.eventually(lambda: comments(stack, conversation_id), timeout=40)
    status, emails = stack.get(f"/api/outbound/conversations/{conversation_id}/emails")
    assert status == 200 and emails["items"] == []
    detail = stack.get(f"/api/conversations/{conversation_id}")[1]
    assert [m["direction"] for m in detail["messages"]] == ["in"]
    assert len([m for m in slack.posts(CHANNEL) if m.get("metadata")]) >= 1  # and Slack got no reply posted


class Connector:
    """A chat connector's webhook endpoint: records each reply outbound delivers, verified with
    the channel's secret (Standard Webhooks)."""

    def __init__(self):
        self.secret: str | None = None
        self.replies: list[dict] = []
        connector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                Webhook(connector.secret).verify(body, dict(self.headers.items()))  # raises: answered 500
                connector.replies.append({"body": json.loads(body), "id": self.headers["webhook-id"]})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/replies"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def connector():
    server = Connector()
    yield server
    server.server.shutdown()
    server.server.server_close()


def chat_conversation(stack, connector) -> tuple[str, str]:
    """A WhatsApp message through the channel's connector API becomes a conversation; its thread."""
    status, channel = stack.post(f"/api/inboxes/{stack.inbox_id}/channels",
                                 {"type": "chat", "kind": "whatsapp", "webhook_url": connector.url})
    assert status == 201, channel
    connector.secret = channel["secret"]
    payload = json.dumps({"message_id": f"wamid.{uuid.uuid4().hex}", "thread_id": "+4915112345678",
                          "sender": {"handle": "+4915112345678", "name": "Ada"}, "text": "Is my parcel lost?"})
    webhook_id = f"msg_{uuid.uuid4().hex}"
    request = urllib.request.Request(stack.url(channel["messages_url"]), data=payload.encode(), method="POST", headers={
        "webhook-id": webhook_id, "webhook-timestamp": str(int(time.time())), "Content-Type": "application/json",
        "webhook-signature": Webhook(channel["secret"]).sign(webhook_id, dt.datetime.now(dt.UTC), payload)})
    with urllib.request.urlopen(request, timeout=30) as response:
        conversation_id = json.loads(response.read())["conversation_id"]
    root = stack.eventually(lambda: next((m for m in stack.slack.posts(CHANNEL) if m["thread_ts"] is None), None))
    return conversation_id, root["ts"]


def test_a_thread_reply_reaches_a_whatsapp_conversation_and_its_connector_as_the_slack_user(stack, slack,
                                                                                              connector):
    stack.slack = slack
    conversation_id, thread = chat_conversation(stack, connector)
    say(stack, "U0STRANGER", "I should not be heard", thread)
    reply = say(stack, "U0AGENT", "It is on its way &amp; arrives <b>today</b>", thread)
    say(stack, "U0AGENT", "It is on its way &amp; arrives <b>today</b>", thread, event_id=reply, retry=1)
    [delivered] = stack.eventually(lambda: connector.replies, timeout=40)
    assert delivered["body"]["text"] == "It is on its way & arrives <b>today</b>"
    assert delivered["body"]["thread_id"] == "+4915112345678" and delivered["body"]["kind"] == "whatsapp"
    assert delivered["body"]["author"] == {"name": "agent@mailroom.test"}  # sent as the Slack user's mailroom user
    [told] = stack.eventually(lambda: slack.ephemerals, timeout=40)
    assert told["user"] == "U0STRANGER" and NOT_A_MEMBER in told["text"]
    say(stack, "U0AGENT", "note: all handled", thread)  # after the reply and its retry: they are settled
    stack.eventually(lambda: comments(stack, conversation_id), timeout=40)
    assert len(connector.replies) == 1  # Slack's retry of the reply sent nothing more
    detail = stack.get(f"/api/conversations/{conversation_id}")[1]
    assert [m["text"] for m in detail["messages"] if m["direction"] == "out"] == [delivered["body"]["text"]]
