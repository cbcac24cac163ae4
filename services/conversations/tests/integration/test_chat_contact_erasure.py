"""Erasing a chat contact (issue #17) against real conversations and contacts processes (RabbitMQ,
PostgreSQL): the WhatsApp sender's phone number, name and messages are gone from every API, and
the next message from that number starts a new conversation and a new contact instead of joining
the erased thread."""

import datetime as dt
import json
import time
import urllib.request
import uuid

import pytest
from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook

from mailroom_testing.specs import CONTACTS, CONVERSATIONS
from mailroom_testing.tokens import auth

pytestmark = pytest.mark.integration

INBOXES = """
inboxes:
  - key: support
    name: Support
    channels: [{address: support@mailroom.test, primary: true}]
    members: [{user_id: agent-1, email: agent@mailroom.test}]
"""
AGENT = auth("agent-1", email="agent@mailroom.test")
PHONE = "+442079460958"


@pytest.fixture
def stack(stack_factory, tmp_path):
    inboxes = tmp_path / "inboxes.yaml"
    inboxes.write_text(INBOXES)
    started = stack_factory([CONVERSATIONS, CONTACTS], extra_env={
        "CONVERSATIONS_INBOXES_FILE": str(inboxes), "MAILROOM_CONNECTOR_SECRET_KEY": Fernet.generate_key().decode(),
        "MAILROOM_CONNECTOR_ALLOW_PRIVATE_TARGETS": "true", "MAILROOM_BLOCKING_DETECTION_SECONDS": "5"})
    started.inbox_id = started.eventually(lambda: next(
        (i["id"] for i in started.get("/api/inboxes")[1].get("items", []) if i["key"] == "support"), None), timeout=30)
    return started


def signed_post(stack, path, body, secret):
    payload = json.dumps(body).encode()
    webhook_id = f"msg_{uuid.uuid4().hex}"
    signature = Webhook(secret).sign(webhook_id, dt.datetime.fromtimestamp(int(time.time()), tz=dt.UTC),
                                     payload.decode())
    request = urllib.request.Request(stack.url(path), data=payload, method="POST")
    for key, value in {"webhook-id": webhook_id, "webhook-timestamp": str(int(time.time())),
                       "webhook-signature": signature, "Content-Type": "application/json"}.items():
        request.add_header(key, value)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def chat(text, name="Ada Lovelace"):
    return {"message_id": f"wamid.{uuid.uuid4().hex}", "thread_id": PHONE, "sender": {"handle": PHONE, "name": name},
            "text": text}


def test_an_erased_chat_contact_leaves_no_phone_name_or_text_and_comes_back_as_new(stack):
    status, channel = stack.post(f"/api/inboxes/{stack.inbox_id}/channels", {
        "type": "chat", "kind": "whatsapp", "name": "WhatsApp", "webhook_url": "http://127.0.0.1:9/replies"})
    assert status == 201, channel
    status, first = signed_post(stack, channel["messages_url"], chat("my account is 4711"), channel["secret"])
    assert status == 201, first

    def contact():
        items = stack.get("/api/contacts?q=lovelace")[1]["items"]
        return items[0] if items else None
    ada = stack.eventually(contact, timeout=30)
    assert ada["identities"] == [{"kind": "phone", "value": PHONE}]
    stack.eventually(lambda: len(stack.get(f"/api/contacts/{ada['id']}/timeline")[1]["items"]) == 1, timeout=30)

    status, report = stack.post(f"/api/contacts/{ada['id']}/erase")
    assert status == 202, report
    done = stack.eventually(lambda: stack.get(f"/api/contacts/erasures/{report['id']}")[1]["services"][
        "conversations"], timeout=30)
    assert done == {"conversations": 1, "messages": 1, "attachments": 0, "known_addresses": 0,
                    "pending_events": 0}

    assert stack.get(f"/api/contacts/{ada['id']}")[0] == 404
    assert stack.get("/api/contacts?q=lovelace")[1]["items"] == []
    seen = [stack.get(f"/api/conversations/{first['conversation_id']}", headers=AGENT)[1],
            stack.get(f"/api/inboxes/{stack.inbox_id}/conversations?view=all", headers=AGENT)[1]]
    text = json.dumps(seen)
    for trace in (PHONE, PHONE[1:], "4711", "Lovelace"):
        assert trace not in text, trace

    # the same number writes again: a new conversation and a new contact, not the erased thread
    status, again = signed_post(stack, channel["messages_url"], chat("hello again", name="Newcomer"), channel["secret"])
    assert status == 201 and again["conversation_id"] != first["conversation_id"]
    newcomer = stack.eventually(lambda: (stack.get("/api/contacts?q=newcomer")[1]["items"] or [None])[0], timeout=30)
    assert newcomer["id"] != ada["id"] and newcomer["identities"] == [{"kind": "phone", "value": PHONE}]
