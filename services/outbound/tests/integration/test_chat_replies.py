"""Replies to chat conversations (docs/channels.md) as a user sees them: real outbound,
conversations and contacts processes, RabbitMQ, PostgreSQL, a local chat connector (an HTTP server
in the test process that verifies every Standard Webhooks signature with the `standardwebhooks`
package and answers what the test tells it) and, for forms, a real SMTP server (aiosmtpd)."""

import base64
import datetime as dt
import json
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.fernet import Fernet
from nameko.standalone.rpc import ClusterRpcProxy
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mailroom_testing.specs import CONTACTS, CONVERSATIONS, OUTBOUND
from mailroom_testing.stack import free_port
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.team import MailSink, relay_env, running, start_with_inboxes
from mailroom_testing.tokens import auth

pytestmark = pytest.mark.integration

INBOXES = """
inboxes:
  - key: support
    name: Support
    channels: [{address: support@mailroom.test, primary: true}]
    members: [{user_id: agent-1, email: agent@mailroom.test}]
    access: {visibility: specific}
"""
AGENT = auth("agent-1", email="agent@mailroom.test")
VIEWER = auth("auditor", roles=["account_access"])  # may view every inbox, act in none it is not a member of
EVENTS = [("outbound.events", "#"), ("conversations.events", "#"), ("contacts.events", "#")]


class Connector:
    """A chat connector's webhook endpoint: verifies each request's signature with the channel's
    secret (once known), records it, and answers the next of `answers` (then 200)."""

    def __init__(self):
        self.secret: str | None = None
        self.requests: list[dict] = []
        self.answers: list[int] = []
        self.lock = threading.Lock()
        connector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's hook name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    Webhook(connector.secret).verify(body, dict(self.headers.items()))
                    verified = True
                except WebhookVerificationError:
                    verified = False
                with connector.lock:
                    status = connector.answers.pop(0) if connector.answers else 200
                    connector.requests.append({"headers": dict(self.headers.items()), "body": json.loads(body),
                                               "raw": body, "verified": verified, "answered": status})
                self.send_response(status if verified else 401)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/replies"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def connector():
    server = Connector()
    yield server
    server.server.shutdown()


@pytest.fixture
def sink():
    with running(MailSink()) as handler:
        yield handler, handler.port


@pytest.fixture
def stack(stack_factory, tmp_path, sink):
    return start_with_inboxes(stack_factory, [OUTBOUND, CONVERSATIONS, CONTACTS], INBOXES, tmp_path, relay_env(
        sink[0], MAILROOM_CONNECTOR_SECRET_KEY=Fernet.generate_key().decode(),
        MAILROOM_CONNECTOR_ALLOW_PRIVATE_TARGETS="true", OUTBOUND_RETRY_BASE_SECONDS="0.2",
        OUTBOUND_RETRY_MAX_SECONDS="1", OUTBOUND_MAX_ATTEMPTS="4",
        # a shared, loaded machine: a start (imports) may hold a loop over the default 1 s
        MAILROOM_BLOCKING_DETECTION_SECONDS="5"))


def signed_post(stack, path, body, secret):
    payload = json.dumps(body)
    webhook_id = f"msg_{uuid.uuid4().hex}"
    signature = Webhook(secret).sign(webhook_id, dt.datetime.now(dt.UTC), payload)
    request = urllib.request.Request(stack.url(path), data=payload.encode(), method="POST", headers={
        "webhook-id": webhook_id, "webhook-timestamp": str(int(time.time())), "webhook-signature": signature,
        "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def chat_conversation(stack, connector, kind="whatsapp", thread="+4915112345678"):
    status, channel = stack.post(f"/api/inboxes/{stack.inbox_id}/channels",
                                 {"type": "chat", "kind": kind, "webhook_url": connector.url})
    assert status == 201, channel
    connector.secret = channel["secret"]
    status, accepted = signed_post(stack, channel["messages_url"], {
        "message_id": f"in-{uuid.uuid4().hex}", "thread_id": thread, "sender": {"handle": thread, "name": "Ada"},
        "text": "Is my parcel lost?"}, channel["secret"])
    assert status == 201
    return channel, accepted["conversation_id"]


def reply(stack, conversation_id, body, headers=AGENT):
    return stack.post(f"/api/outbound/conversations/{conversation_id}/replies", body, headers=headers)


def delivery_state(stack, conversation_id, text):
    status, conversation = stack.get(f"/api/conversations/{conversation_id}")
    out = [m for m in conversation["messages"] if m["direction"] == "out" and m["text"] == text]
    return out and ((out[0]["flags"] or {}).get("delivery") or {}).get("state")


def test_a_reply_to_whatsapp_reaches_the_connector_signed_and_is_logged(stack, connector, amqp_uri):
    channel, conversation_id = chat_conversation(stack, connector)
    with EventSubscriber(amqp_uri, EVENTS) as events:
        status, queued = reply(stack, conversation_id, {"text": "It is on its way <b>today</b>."})
        assert status == 202, queued
        assert queued["kind"] == "chat_reply" and queued["state"] == "queued"
        sent = events.wait_for("chat_message_sent")[0]
        entry = events.wait_for("timeline_entry_added", lambda e: e["data"]["direction"] == "out")[0]
    [request] = connector.requests
    assert request["verified"] and request["headers"]["webhook-id"] == queued["id"] == sent["data"]["chat_message_id"]
    assert request["body"]["text"] == "It is on its way <b>today</b>."
    assert request["body"]["thread_id"] == "+4915112345678" and request["body"]["kind"] == "whatsapp"
    assert request["body"]["author"] == {"name": "agent@mailroom.test"}
    assert stack.eventually(lambda: delivery_state(stack, conversation_id, "It is on its way <b>today</b>.") == "sent")
    status, timeline = stack.get(f"/api/contacts/{entry['data']['contact_id']}/timeline")
    assert [e["direction"] for e in timeline["items"]] == ["out", "in"]
    assert timeline["items"][0]["channel_address"] == "phone:+4915112345678"
    assert all(e["conversation_id"] == conversation_id for e in timeline["items"])


def test_a_connector_that_fails_then_answers_gets_the_same_webhook_id_until_it_is_sent_once(stack, connector,
                                                                                             amqp_uri):
    _, conversation_id = chat_conversation(stack, connector, kind="messenger", thread="2712345678")
    connector.answers = [500, 429, 503]
    with EventSubscriber(amqp_uri, EVENTS) as events:
        status, queued = reply(stack, conversation_id, {"text": "Hello again"})
        assert status == 202
        events.wait_for("chat_message_sent", timeout=30)
        time.sleep(1.5)  # a further attempt would come within the backoff (at most 1 s here)
        assert len(events.of_type("chat_message_sent")) == 1
    assert [r["answered"] for r in connector.requests] == [500, 429, 503, 200]
    assert {r["headers"]["webhook-id"] for r in connector.requests} == {queued["id"]}
    assert len({r["raw"] for r in connector.requests}) == 1 and all(r["verified"] for r in connector.requests)
    assert stack.eventually(lambda: delivery_state(stack, conversation_id, "Hello again") == "sent")


def test_a_connector_that_refuses_the_reply_fails_it_at_once_and_says_so(stack, connector, amqp_uri):
    _, conversation_id = chat_conversation(stack, connector, kind="livechat", thread="session-42")
    connector.answers = [400]
    with EventSubscriber(amqp_uri, EVENTS) as events:
        assert reply(stack, conversation_id, {"text": "Anyone there?"})[0] == 202
        failed = events.wait_for("chat_message_failed")[0]
    assert failed["data"]["status"] == 400 and len(connector.requests) == 1
    assert stack.eventually(lambda: delivery_state(stack, conversation_id, "Anyone there?") == "failed")


def test_a_dead_connector_is_retried_until_the_attempts_are_used_up(stack, connector, amqp_uri):
    _, conversation_id = chat_conversation(stack, connector)
    connector.server.shutdown()
    connector.server.server_close()  # nothing answers at that port any more
    with EventSubscriber(amqp_uri, EVENTS) as events:
        assert reply(stack, conversation_id, {"text": "Are you there?"})[0] == 202
        failed = events.wait_for("chat_message_failed", timeout=30)[0]
    assert failed["data"]["attempts"] == 4 and "retries exhausted" in failed["data"]["reason"]


def test_the_same_idempotency_key_sends_once_and_email_fields_are_refused(stack, connector):
    _, conversation_id = chat_conversation(stack, connector)
    headers = {**AGENT, "Idempotency-Key": "reply-1"}
    first = reply(stack, conversation_id, {"text": "Once"}, headers=headers)
    again = reply(stack, conversation_id, {"text": "Once"}, headers=headers)
    assert first[0] == 202 and again[0] == 200 and again[1]["id"] == first[1]["id"]
    assert reply(stack, conversation_id, {"text": "Other"}, headers=headers)[0] == 409
    stack.eventually(lambda: len(connector.requests) == 1)
    for body in ({"text": "x", "subject": "Hi"}, {"text": "x", "cc": ["a@example.com"]}, {"text": "  "},
                 {"text": "x", "attachments": [{"filename": "a.txt", "content_base64": "YQ=="}]}, {}):
        status, answer = reply(stack, conversation_id, body)
        assert status == 400, (body, answer)
    # a viewer who is no member may not reply; nothing is sent
    assert reply(stack, conversation_id, {"text": "from a viewer"}, headers=VIEWER)[0] == 403
    time.sleep(0.5)
    assert len(connector.requests) == 1


def test_a_reply_through_rpc_takes_the_same_path(stack, connector):
    _, conversation_id = chat_conversation(stack, connector)
    with ClusterRpcProxy({"AMQP_URI": stack.amqp_uri}) as cluster:
        queued = cluster.outbound.reply(conversation_id, {"text": "From Slack"}, "slack-evt-1")
        assert cluster.outbound.reply(conversation_id, {"text": "From Slack"}, "slack-evt-1")["id"] == queued["id"]
    stack.eventually(lambda: [r["body"]["text"] for r in connector.requests] == ["From Slack"])
    assert connector.requests[0]["headers"]["webhook-id"] == queued["id"]


def test_a_reply_to_a_form_submission_goes_by_email_to_the_submitter(stack, connector, sink):
    status, channel = stack.post(f"/api/inboxes/{stack.inbox_id}/channels", {"type": "form", "name": "Contact"})
    assert status == 201
    status, accepted = signed_post(stack, channel["submissions_url"], {
        "submission_id": "form-1", "email": "grace@example.com", "name": "Grace",
        "fields": {"Message": "My invoice is wrong"}}, channel["secret"])
    assert status == 201
    status, queued = reply(stack, accepted["conversation_id"], {"text": "We are on it."})
    assert status == 202 and queued["to"][0]["email"] == "grace@example.com", queued
    handler, _ = sink
    stack.eventually(lambda: handler.accepted)
    [mail] = handler.accepted
    assert mail["rcpt_tos"] == ["grace@example.com"]
    assert mail["message"]["Subject"] == "Re: Contact submission"
    assert "We are on it." in mail["message"].get_body(("plain",)).get_content()
    assert connector.requests == []


def test_the_connector_sees_inline_bytes_of_nothing_but_text(stack, connector):
    """Hostile text goes to the connector as the JSON string it is (no HTML rendering, no escaping
    games): the connector decides how its channel shows it."""
    _, conversation_id = chat_conversation(stack, connector)
    hostile = '<script>alert(1)</script>\r\nX-Injected: yes "\u202e'
    assert reply(stack, conversation_id, {"text": hostile})[0] == 202
    stack.eventually(lambda: connector.requests)
    assert connector.requests[0]["body"]["text"] == hostile.strip()
    assert base64.b64encode(connector.requests[0]["raw"])  # valid bytes, signed as sent


def test_reply_defaults_and_a_forward_of_a_chat_conversation_work_by_email(stack, connector, sink):
    _, conversation_id = chat_conversation(stack, connector)
    status, defaults = stack.get(f"/api/outbound/conversations/{conversation_id}/reply-defaults", headers=AGENT)
    assert status == 200, defaults
    status, forwarded = stack.post(f"/api/outbound/conversations/{conversation_id}/forwards",
                                   {"to": ["colleague@example.com"], "text": "FYI"}, headers=AGENT)
    assert status == 202, forwarded
    handler, _ = sink
    stack.eventually(lambda: handler.accepted)
    assert handler.accepted[0]["rcpt_tos"] == ["colleague@example.com"]
    assert "Is my parcel lost?" in handler.accepted[0]["message"].get_body(("plain",)).get_content()
    assert connector.requests == []
