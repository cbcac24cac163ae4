"""Chat and form channels (docs/channels.md) against real services, RabbitMQ and PostgreSQL: an
admin creates a channel (secret shown once, sealed at rest, SSRF-checked webhook URL); a connector
posts signed chat messages and form submissions that become conversations with the same events as
email; contacts resolve chat senders by identity (E.164 phone numbers) and log the messages. Every
entry point gets bad and stale signatures, malformed, oversized, duplicate and hostile input."""

import base64
import json
import time
import urllib.request
import uuid

import pytest
from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook

from mailroom_testing.specs import CONTACTS, CONVERSATIONS
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import NO_AUTH, auth

pytestmark = pytest.mark.integration

INBOXES = """
inboxes:
  - key: support
    name: Support
    channels: [{address: support@mailroom.test, primary: true}]
    members: [{user_id: agent-1, email: agent@mailroom.test}]
"""
EVENTS = [("conversations.events", "#"), ("contacts.events", "#")]
# the machine these run on is shared and loaded: a service's start (imports) may hold its loop over
# the stack's default 1 s; a blocking call in the request paths would still be seen at 5 s
LOADED_MACHINE = {"MAILROOM_BLOCKING_DETECTION_SECONDS": "5"}
AGENT = auth("agent-1", email="agent@mailroom.test")


@pytest.fixture
def stack(stack_factory, tmp_path):
    inboxes = tmp_path / "inboxes.yaml"
    inboxes.write_text(INBOXES)
    started = stack_factory([CONVERSATIONS, CONTACTS], extra_env={
        "CONVERSATIONS_INBOXES_FILE": str(inboxes), "MAILROOM_CONNECTOR_SECRET_KEY": Fernet.generate_key().decode(),
        "MAILROOM_CONNECTOR_ALLOW_PRIVATE_TARGETS": "true", "CONVERSATIONS_CHANNEL_MAX_REQUEST_BYTES": "200000",
        **LOADED_MACHINE})
    started.inbox_id = started.eventually(lambda: next(
        (i["id"] for i in started.get("/api/inboxes")[1].get("items", []) if i["key"] == "support"), None), timeout=30)
    return started


def create_channel(stack, **body):
    body = {"type": "chat", "kind": "whatsapp", "name": "WhatsApp", "webhook_url": "http://127.0.0.1:9/replies",
            **body}
    status, channel = stack.post(f"/api/inboxes/{stack.inbox_id}/channels", body)
    assert status == 201, channel
    return channel


def signed_post(stack, path, body, secret, *, timestamp=None, message_id=None, raw=None, headers=None):
    """POST as a connector: the body signed with the channel's secret (Standard Webhooks)."""
    payload = raw if raw is not None else json.dumps(body).encode()
    moment = int(timestamp if timestamp is not None else time.time())
    webhook_id = message_id or f"msg_{uuid.uuid4().hex}"
    import datetime as dt
    signature = Webhook(secret).sign(webhook_id, dt.datetime.fromtimestamp(moment, tz=dt.UTC),
                                     payload.decode("utf-8", "replace"))
    signed = {"webhook-id": webhook_id, "webhook-timestamp": str(moment), "webhook-signature": signature,
              "Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(stack.url(path), data=payload, method="POST")
    for key, value in signed.items():
        if value is not None:
            request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def chat(message_id=None, thread="+44 20 7946 0958", handle=None, text="Hi, where is my order?", name="Ada", **more):
    return {"message_id": message_id or f"wamid.{uuid.uuid4().hex}", "thread_id": thread,
            "sender": {"handle": handle or thread, "name": name}, "text": text, **more}


def test_a_channel_is_created_by_an_admin_with_a_secret_shown_once(stack):
    channel = create_channel(stack)
    assert channel["secret"].startswith("whsec_") and channel["type"] == "chat" and channel["kind"] == "whatsapp"
    assert channel["messages_url"] == f"/api/channels/{channel['id']}/messages"
    status, listed = stack.get(f"/api/inboxes/{stack.inbox_id}/channels")
    assert status == 200 and [c["id"] for c in listed["items"]] == [channel["id"]]
    assert "secret" not in listed["items"][0]
    assert channel["secret"] not in stack.log("conversations")
    # a member who may not manage inboxes, and anonymous callers, cannot create one
    assert stack.post(f"/api/inboxes/{stack.inbox_id}/channels", {"type": "form"}, headers=AGENT)[0] == 403
    assert stack.post(f"/api/inboxes/{stack.inbox_id}/channels", {"type": "form"}, headers=NO_AUTH)[0] == 401
    # a chat channel needs a kind and a URL; a form has no kind
    assert stack.post(f"/api/inboxes/{stack.inbox_id}/channels", {"type": "chat", "kind": "whatsapp"})[0] == 400
    assert stack.post(f"/api/inboxes/{stack.inbox_id}/channels", {"type": "chat", "kind": "telegram",
                                                                  "webhook_url": "http://127.0.0.1:9/"})[0] == 400
    assert stack.post(f"/api/inboxes/{stack.inbox_id}/channels", {"type": "form", "kind": "whatsapp"})[0] == 400
    assert stack.post("/api/inboxes/nope/channels", {"type": "form"})[0] == 404


def test_a_webhook_url_to_a_private_address_is_refused_unless_allowed(stack_factory, tmp_path):
    inboxes = tmp_path / "inboxes.yaml"
    inboxes.write_text(INBOXES)
    stack = stack_factory([CONVERSATIONS], extra_env={
        "CONVERSATIONS_INBOXES_FILE": str(inboxes), "MAILROOM_CONNECTOR_SECRET_KEY": Fernet.generate_key().decode(),
        **LOADED_MACHINE})
    inbox_id = stack.eventually(lambda: (stack.get("/api/inboxes")[1].get("items") or [{}])[0].get("id"), timeout=30)
    for url in ("http://127.0.0.1:8080/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data",
                "http://[::1]/hook", "http://localhost/hook", "ftp://example.com/hook",
                "http://user:pw@example.com/hook"):
        status, body = stack.post(f"/api/inboxes/{inbox_id}/channels",
                                  {"type": "chat", "kind": "livechat", "webhook_url": url})
        assert status == 400 and body["error"]["details"]["field"] == "webhook_url", (url, body)
    # a form channel needs no URL
    assert stack.post(f"/api/inboxes/{inbox_id}/channels", {"type": "form"})[0] == 201


def test_a_chat_message_becomes_a_conversation_and_a_contact_with_its_phone_number(stack, amqp_uri):
    channel = create_channel(stack)
    path = channel["messages_url"]
    with EventSubscriber(amqp_uri, EVENTS) as events:
        status, accepted = signed_post(stack, path, chat(message_id="wamid.1"), channel["secret"])
        assert status == 201, accepted
        created = events.wait_for("conversation_created")[0]
        added = events.wait_for("message_added")[0]
        received = events.wait_for("channel_message_received")[0]
        contact_created = events.wait_for("contact_created")[0]
        events.wait_for("timeline_entry_added")[0]
    assert created["data"]["conversation_id"] == accepted["conversation_id"] == added["data"]["conversation_id"]
    assert received["data"]["identity"] == {"kind": "phone", "value": "+442079460958"}
    assert contact_created["data"]["identities"] == [{"kind": "phone", "value": "+442079460958"}]

    status, conversation = stack.get(f"/api/conversations/{accepted['conversation_id']}")
    assert status == 200
    assert conversation["channel_type"] == "chat" and conversation["channel_kind"] == "whatsapp"
    assert conversation["external_thread_id"] == "+442079460958"
    assert conversation["subject"] == "Hi, where is my order?"
    assert [m["text"] for m in conversation["messages"]] == ["Hi, where is my order?"]

    # the same thread (written differently) continues the conversation; the contact is the same
    status, second = signed_post(stack, path, chat(thread="442079460958", text="Order 42"), channel["secret"])
    assert status == 201 and second["conversation_id"] == accepted["conversation_id"]
    contact_id = contact_created["data"]["contact_id"]
    status, contact = stack.get(f"/api/contacts/{contact_id}")
    assert contact["identities"] == [{"kind": "phone", "value": "+442079460958"}] and contact["name"] == "Ada"
    timeline = stack.eventually(lambda: (lambda page: page if len(page["items"]) == 2 else None)(
        stack.get(f"/api/contacts/{contact_id}/timeline")[1]))
    assert {e["conversation_id"] for e in timeline["items"]} == {accepted["conversation_id"]}
    assert {e["direction"] for e in timeline["items"]} == {"in"}
    # an email email conversation says so
    status, page = stack.get(f"/api/inboxes/{stack.inbox_id}/conversations")
    assert [c["channel_type"] for c in page["items"]] == ["chat"]


def test_the_same_message_id_twice_is_stored_once(stack):
    channel = create_channel(stack)
    body = chat(message_id="wamid.same")
    first = signed_post(stack, channel["messages_url"], body, channel["secret"])
    again = signed_post(stack, channel["messages_url"], body, channel["secret"])
    assert first[0] == 201 and again == (200, first[1])
    status, conversation = stack.get(f"/api/conversations/{first[1]['conversation_id']}")
    assert conversation["message_count"] == 1


def test_bad_stale_and_missing_signatures_are_refused_and_store_nothing(stack):
    channel = create_channel(stack)
    path, body = channel["messages_url"], chat()
    other_secret = create_channel(stack)["secret"]
    assert signed_post(stack, path, body, other_secret)[0] == 401
    assert signed_post(stack, path, body, channel["secret"], timestamp=time.time() - 3600)[0] == 401
    assert signed_post(stack, path, body, channel["secret"], timestamp=time.time() + 3600)[0] == 401
    assert signed_post(stack, path, body, channel["secret"], headers={"webhook-signature": None})[0] == 401
    assert signed_post(stack, path, body, channel["secret"], headers={"webhook-timestamp": "soon"})[0] == 401
    # a body changed after signing
    payload = json.dumps(body).encode()
    status, _ = signed_post(stack, path, None, channel["secret"], raw=payload,
                            headers={"webhook-signature": Webhook(channel["secret"]).sign(
                                "msg_x", __import__("datetime").datetime.now(__import__("datetime").UTC),
                                payload.decode().replace("order", "ORDER"))})
    assert status == 401
    assert stack.get(f"/api/inboxes/{stack.inbox_id}/conversations")[1]["items"] == []


def test_unknown_channel_malformed_oversized_and_invalid_input(stack):
    channel = create_channel(stack)
    path, secret = channel["messages_url"], channel["secret"]
    assert signed_post(stack, f"/api/channels/{uuid.uuid4()}/messages", chat(), secret)[0] == 404
    # a chat channel takes no submissions, a form channel no chat messages
    assert signed_post(stack, f"/api/channels/{channel['id']}/submissions", {}, secret)[0] == 404
    status, body = signed_post(stack, path, None, secret, raw=b"{not json")
    assert status == 400, body
    assert signed_post(stack, path, None, secret, raw=b"[1, 2]")[0] == 400
    assert signed_post(stack, path, {"text": "no ids"}, secret)[0] == 400
    status, body = signed_post(stack, path, chat(thread="not a number"), secret)
    assert status == 400 and body["error"]["details"]["field"] == "thread_id"
    assert signed_post(stack, path, chat(text="", attachments=[]), secret)[0] == 400
    assert signed_post(stack, path, chat(attachments=[{"content_base64": "%%%"}]), secret)[0] == 400
    assert signed_post(stack, path, chat(attachments=[{"url": "javascript:alert(1)"}]), secret)[0] == 400
    assert signed_post(stack, path, chat(attachments=[{"url": "https://cdn.example/x.png"}] * 11), secret)[0] == 400
    assert signed_post(stack, path, chat(text="x" * 300_000), secret)[0] == 413  # the stack's limit: 200,000 bytes
    assert stack.get(f"/api/inboxes/{stack.inbox_id}/conversations")[1]["items"] == []


def test_hostile_text_is_stored_as_text_and_attachments_are_bounded(stack):
    channel = create_channel(stack, kind="livechat")
    hostile = '<script>alert(1)</script><img src=x onerror=alert(2)> "quotes" & \u202e'
    picture = base64.b64encode(b"\x89PNG fake").decode()
    status, accepted = signed_post(stack, channel["messages_url"], chat(
        thread="session-7", handle="visitor-7", name="<b>Eve</b>", text=hostile, attachments=[
            {"filename": "../../etc/passwd", "content_type": "image/png", "content_base64": picture},
            {"filename": "invoice.pdf", "url": "https://cdn.example/invoice.pdf", "size": 1234}]), channel["secret"])
    assert status == 201, accepted
    status, conversation = stack.get(f"/api/conversations/{accepted['conversation_id']}")
    message = conversation["messages"][0]
    assert message["text"] == hostile
    status, full = stack.get(f"/api/messages/{message['id']}")
    assert status == 200 and full["html"] is None and full["text"] == hostile
    assert conversation["contact"]["name"] == "<b>Eve</b>" and conversation["channel_kind"] == "livechat"
    inline, linked = message["attachments"]
    assert inline["filename"] == ".._.._etc_passwd" and inline["size"] == len(b"\x89PNG fake")
    assert linked["url"] == "https://cdn.example/invoice.pdf" and linked["external"] is True
    request = urllib.request.Request(stack.url(inline["url"]), headers=stack.default_headers)
    with urllib.request.urlopen(request) as response:
        assert response.read() == b"\x89PNG fake"
        assert response.headers["Content-Disposition"] == "attachment"
        assert response.headers["Content-Security-Policy"] == "sandbox"
    too_big = base64.b64encode(b"x" * 100).decode()
    assert signed_post(stack, channel["messages_url"], chat(thread="s-8", handle="v-8", attachments=[
        {"content_base64": too_big}]), channel["secret"])[0] == 201
    # a handle that is no handle
    assert signed_post(stack, channel["messages_url"], chat(thread="a b <c>", handle="x"),
                       channel["secret"])[0] == 400


def test_a_form_submission_becomes_a_conversation_with_the_submitter(stack, amqp_uri):
    channel = create_channel(stack, type="form", kind=None, webhook_url=None, name="Contact form")
    assert channel["webhook_url"] is None
    path = channel["submissions_url"]
    submission = {"submission_id": "sub-1", "email": "Grace@Example.com", "name": "Grace",
                  "fields": {"Order number": 42, "Message": "<i>Broken</i>\nplease help", "Topics": ["a", "b"]}}
    with EventSubscriber(amqp_uri, EVENTS) as events:
        status, accepted = signed_post(stack, path, submission, channel["secret"])
        assert status == 201, accepted
        received = events.wait_for("channel_message_received")[0]
        created = events.wait_for("contact_created")[0]
    assert received["data"]["email"] == "grace@example.com" and created["data"]["emails"] == ["grace@example.com"]
    status, conversation = stack.get(f"/api/conversations/{accepted['conversation_id']}")
    assert conversation["channel_type"] == "form" and conversation["channel_kind"] is None
    assert conversation["subject"] == "Contact form submission"
    assert conversation["contact"]["email"] == "grace@example.com"
    assert conversation["messages"][0]["text"] == "Order number: 42\nMessage:\n<i>Broken</i>\nplease help\nTopics: a, b"
    assert signed_post(stack, path, submission, channel["secret"]) == (200, accepted)
    assert signed_post(stack, path, {**submission, "submission_id": "sub-2", "email": "not an address"},
                       channel["secret"])[0] == 400
    assert signed_post(stack, path, {**submission, "submission_id": "sub-3", "fields": {"x": {"nested": 1}}},
                       channel["secret"])[0] == 400
    assert signed_post(stack, path, {**submission, "submission_id": "sub-4"}, "whsec_" + "A" * 44)[0] == 401
    assert signed_post(stack, f"/api/channels/{channel['id']}/messages", chat(), channel["secret"])[0] == 404


def test_concurrent_first_messages_of_one_thread_make_one_conversation_and_one_contact(stack):
    import concurrent.futures

    channel = create_channel(stack, kind="messenger")
    bodies = [chat(message_id=f"mid.{n}", thread="2712345678", handle="2712345678") for n in range(6)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda body: signed_post(stack, channel["messages_url"], body, channel["secret"]),
                                bodies + bodies))  # every message twice, all at once
    assert sorted(status for status, _ in answers) == [200] * 6 + [201] * 6
    assert len({answer["conversation_id"] for _, answer in answers}) == 1
    assert len({answer["message_id"] for _, answer in answers}) == 6
    conversation_id = answers[0][1]["conversation_id"]
    assert stack.get(f"/api/conversations/{conversation_id}")[1]["message_count"] == 6
    found = stack.eventually(lambda: (lambda page: page if len(page["items"]) == 1 and stack.get(
        f"/api/contacts/{page['items'][0]['id']}/timeline")[1]["items"].__len__() == 6 else None)(
        stack.get("/api/contacts?q=Ada")[1]), timeout=30)
    assert found["items"][0]["identities"] == [{"kind": "messenger", "value": "2712345678"}]


def test_the_reply_context_says_what_the_conversation_came_in_on(stack):
    from nameko.standalone.rpc import ClusterRpcProxy

    channel = create_channel(stack)
    _, accepted = signed_post(stack, channel["messages_url"], chat(), channel["secret"])
    with ClusterRpcProxy({"AMQP_URI": stack.amqp_uri}) as cluster:
        context = cluster.conversations.get_reply_context(accepted["conversation_id"])
        connector = cluster.conversations.get_chat_connector(channel["id"])
    assert context["channel_type"] == "chat" and context["channel_kind"] == "whatsapp"
    assert context["conversation"]["channel_type"] == "chat"
    assert context["chat"] == {"channel_id": channel["id"], "thread_id": "+442079460958"}
    assert connector["webhook_url"] == "http://127.0.0.1:9/replies" and connector["kind"] == "whatsapp"
    assert channel["secret"] not in json.dumps(connector)  # sealed: only the key opens it
