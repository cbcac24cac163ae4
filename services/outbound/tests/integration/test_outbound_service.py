"""The outbound service as it runs in production: real processes (outbound, conversations, contacts,
ingest), real RabbitMQ and PostgreSQL, and a real SMTP server (aiosmtpd, in a thread of the test
process) as the relay, which can answer 250, 4xx or 5xx on demand, or stall."""

import asyncio
import base64
import hashlib
import json
import threading
import time
import urllib.parse
import urllib.request
import uuid
from email import policy
from email.parser import BytesParser

import pytest
from aiosmtpd.controller import Controller

from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST, OUTBOUND
from mailroom_testing.stack import free_port
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import NO_AUTH, auth

pytestmark = pytest.mark.integration

SUPPORT, SALES, BILLING = "support@mailroom.test", "sales@mailroom.test", "billing@mailroom.test"
INBOXES = f"""
inboxes:
  - key: support
    name: Support
    channels:
      - {{address: {SUPPORT}, name: Support Team, primary: true}}
      - {{address: {SALES}, name: Sales}}
    members:
      - {{user_id: agent-1, email: agent@mailroom.test}}
  - key: billing
    name: Billing
    channels:
      - {{address: {BILLING}, name: Billing}}
"""
EVENTS = [("outbound.events", "#"), ("conversations.events", "#"), ("contacts.events", "#")]


class Sink:
    """An SMTP server that records what it accepts; `answers` are used (in order) for DATA."""

    def __init__(self):
        self.accepted: list[dict] = []
        self.answers: list[str] = []
        self.stall = False
        self.stalling = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        if self.stall and not self.stalling.is_set():  # only the first DATA is held
            self.stalling.set()
            while not self.release.is_set():
                await asyncio.sleep(0.05)
        with self._lock:
            answer = self.answers.pop(0) if self.answers else None
        if answer and not answer.startswith("2"):
            return answer
        message = BytesParser(policy=policy.default).parsebytes(envelope.original_content or envelope.content)
        with self._lock:
            queue_id = f"Q{len(self.accepted) + 1:04d}"
            self.accepted.append({"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                                  "message": message, "raw": envelope.original_content, "queue_id": queue_id})
        return f"250 2.0.0 Ok: queued as {queue_id}"

    def with_message_id(self, message_id: str) -> list[dict]:
        return [m for m in self.accepted if m["message"]["Message-ID"] == f"<{message_id}>"]


@pytest.fixture
def sink():
    handler = Sink()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    handler.release.set()
    controller.stop()


def start_stack(stack_factory, sink, tmp_path, **env):
    inboxes = tmp_path / "inboxes.yaml"
    inboxes.write_text(INBOXES)
    _, port = sink
    started = stack_factory([OUTBOUND, CONVERSATIONS, CONTACTS, INGEST], extra_env={
        "CONVERSATIONS_INBOXES_FILE": str(inboxes), "OUTBOUND_SMTP_HOST": "127.0.0.1",
        "OUTBOUND_SMTP_PORT": str(port), "OUTBOUND_SMTP_TIMEOUT": "20", "OUTBOUND_RETRY_BASE_SECONDS": "0.5",
        "OUTBOUND_POLL_SECONDS": "0.2", "OUTBOUND_SEND_LEASE_SECONDS": "3", "OUTBOUND_MAX_ATTEMPTS": "4",
        "MAILROOM_MESSAGE_ID_DOMAIN": "mailroom.test", **env})
    started.inbox_ids = started.eventually(lambda: _inbox_ids(started), timeout=30)
    return started


@pytest.fixture
def stack(stack_factory, sink, tmp_path):
    return start_stack(stack_factory, sink, tmp_path)


def _inbox_ids(stack):
    status, body = stack.get("/api/inboxes")
    if status != 200:
        return None
    ids = {i["key"]: i["id"] for i in body["items"]}
    return ids if {"support", "billing"} <= set(ids) else None


def customer_mail(*, subject="Where is my order?", sender="Ada Customer <ada@example.com>", to=SUPPORT,
                  cc="Bob <bob@example.com>", in_reply_to=None, message_id=None, body="Hello,\nmy order #42 is late."):
    message_id = message_id or f"{uuid.uuid4().hex}@example.com"
    lines = [f"From: {sender}", f"To: {to}"] + ([f"Cc: {cc}"] if cc else []) + [
        f"Subject: {subject}", f"Message-ID: <{message_id}>", "Date: Wed, 25 Nov 2026 10:00:00 +0000"]
    if in_reply_to:
        lines += [f"In-Reply-To: <{in_reply_to}>", f"References: <{in_reply_to}>"]
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", body, ""]
    return "\r\n".join(lines).encode(), message_id


def deliver_to_ingest(stack, raw: bytes, channel=SUPPORT):
    def post():
        status, body = stack.post(f"/api/ingest/channels/{channel}/messages", raw=raw)
        return (status, body) if status < 300 else None
    return stack.eventually(post, timeout=30)


def conversation_of(stack, inbox_id, rfc_message_id):
    status, page = stack.get(f"/api/inboxes/{inbox_id}/conversations?view=all")
    assert status == 200, page
    for summary in page["items"]:
        status, conversation = stack.get(f"/api/conversations/{summary['id']}")
        if any(m["rfc_message_id"] == rfc_message_id for m in conversation["messages"]):
            return conversation
    return None


def start_conversation(stack, **kwargs):
    raw, message_id = customer_mail(**kwargs)
    deliver_to_ingest(stack, raw)
    conversation = stack.eventually(lambda: conversation_of(stack, stack.inbox_ids["support"], message_id), timeout=30)
    return conversation, message_id


def email_in_state(stack, email_id, state, timeout=30):
    def probe():
        status, email = stack.get(f"/api/outbound/emails/{email_id}")
        return email if status == 200 and email["state"] == state else None
    return stack.eventually(probe, timeout=timeout)


def timeline(stack, email):
    status, found = stack.get(f"/api/contacts?email={email}")
    if status != 200 or not found["items"]:
        return []
    return stack.get(f"/api/contacts/{found['items'][0]['id']}/timeline")[1]["items"]


def test_reply_with_cc_bcc_and_from_switching_reaches_exactly_the_right_people_and_threads_back(stack, sink):
    handler, _ = sink
    conversation, customer_id = start_conversation(stack)
    with EventSubscriber(stack.amqp_uri, EVENTS) as events:
        status, defaults = stack.get(f"/api/outbound/conversations/{conversation['id']}/reply-defaults?reply_all=1")
        assert status == 200, defaults
        assert [a["email"] for a in defaults["to"]] == ["ada@example.com"]
        assert [a["email"] for a in defaults["cc"]] == ["bob@example.com"]
        assert defaults["from"]["email"] == SUPPORT and defaults["subject"] == "Re: Where is my order?"

        status, email = stack.post(f"/api/outbound/conversations/{conversation['id']}/replies", {
            "reply_all": True, "from": SALES, "add_to": [{"email": "dave@example.com", "name": "Dave"}],
            "cc": ["bob@example.com", {"email": "carol@example.com", "name": "Carol Ünïcode"}],
            "bcc": ["boss@example.com"], "html": "<p>Hi Ada, it ships today 🚚 <b>promise</b></p>",
        })
        assert status == 202, email
        assert email["state"] == "queued" and email["message_id"].endswith("@mailroom.test")
        sent = email_in_state(stack, email["id"], "sent")
        events.wait_for("email_sent", lambda e: e["data"]["email_id"] == email["id"])
        events.wait_for("email_queued", lambda e: e["data"]["email_id"] == email["id"])

    [received] = handler.with_message_id(email["message_id"])
    assert received["mail_from"] == SALES
    assert sorted(received["rcpt_tos"]) == ["ada@example.com", "bob@example.com", "boss@example.com",
                                            "carol@example.com", "dave@example.com"]
    message = received["message"]
    assert "Bcc" not in message and b"boss@example.com" not in received["raw"]
    assert [a.addr_spec for a in message["To"].addresses] == ["ada@example.com", "dave@example.com"]
    assert [a.addr_spec for a in message["Cc"].addresses] == ["bob@example.com", "carol@example.com"]
    assert message["Cc"].addresses[1].display_name == "Carol Ünïcode"
    assert message["From"].addresses[0].addr_spec == SALES
    assert str(message["Subject"]) == "Re: Where is my order?"
    assert message["In-Reply-To"] == f"<{customer_id}>" and f"<{customer_id}>" in message["References"]
    assert message["Reply-To"].addresses[0].addr_spec.startswith("sales+")
    assert message["Auto-Submitted"] is None and message["Thread-Index"] and message["Date"]
    assert message.get_body(("plain",)).get_content().strip() == "Hi Ada, it ships today 🚚 promise"
    assert sent["smtp_queue_id"] == received["queue_id"] and sent["attempts"] == 1

    # in its conversation (with our Message-ID and the delivery state) and in the Sent view
    def stored():
        found = stack.get(f"/api/conversations/{conversation['id']}")[1]
        ours = [m for m in found["messages"] if m["direction"] == "out"]
        return ours if ours and any(r.startswith("delivery:sent") for r in ours[0]["flags"]["reasons"]) else None
    [ours] = stack.eventually(stored)
    assert ours["rfc_message_id"] == email["message_id"] and ours["from"]["email"] == SALES
    status, sent_view = stack.get(f"/api/inboxes/{stack.inbox_ids['support']}/sent")
    assert status == 200 and [m["rfc_message_id"] for m in sent_view["items"]] == [email["message_id"]]
    # on every recipient's timeline, BCC included
    for address in ("ada@example.com", "carol@example.com", "boss@example.com", "dave@example.com"):
        entries = stack.eventually(lambda a=address: [e for e in timeline(stack, a) if e["direction"] == "out"])
        assert entries[0]["message_id"] == email["message_id"]
        assert entries[0]["conversation_id"] == conversation["id"]

    # the customer's answer (to the plain address, by In-Reply-To) threads back into the conversation
    answer, answer_id = customer_mail(subject="Re: Where is my order?", cc=None, in_reply_to=email["message_id"],
                                      body="Thanks!")
    deliver_to_ingest(stack, answer)
    threaded = stack.eventually(lambda: conversation_of(stack, stack.inbox_ids["support"], answer_id), timeout=30)
    assert threaded["id"] == conversation["id"]
    assert [m["direction"] for m in threaded["messages"]] == ["in", "out", "in"]


def test_reply_to_a_suppliers_message_never_copies_the_customer(stack, sink):
    handler, _ = sink
    # the customer copied the supplier in: a participant, whose answer joins the conversation
    # (a stranger citing the Message-ID would get a linked conversation of their own)
    conversation, customer_id = start_conversation(stack, cc="Supplier <orders@supplier.example>")
    supplier, supplier_id = customer_mail(sender="Supplier <orders@supplier.example>", cc=None,
                                          subject="Re: Where is my order?", in_reply_to=customer_id,
                                          body="Backordered.")
    deliver_to_ingest(stack, supplier)
    threaded = stack.eventually(lambda: conversation_of(stack, stack.inbox_ids["support"], supplier_id))
    assert threaded["id"] == conversation["id"]
    supplier_message = next(m for m in threaded["messages"] if m["rfc_message_id"] == supplier_id)
    status, email = stack.post(f"/api/outbound/conversations/{conversation['id']}/replies", {
        "message_id": supplier_message["id"], "reply_all": True, "text": "When exactly?"})
    assert status == 202, email
    email_in_state(stack, email["id"], "sent")
    [received] = handler.with_message_id(email["message_id"])
    assert received["rcpt_tos"] == ["orders@supplier.example"]
    assert received["message"]["In-Reply-To"] == f"<{supplier_id}>"

    # reads follow the inbox's visibility: once it is visible to its members only, an outsider
    # cannot learn the email exists (404), a member still sees it, nobody reads without a token
    status, inbox = stack.request("PUT", f"/api/inboxes/{stack.inbox_ids['support']}",
                                  {"access": {"visibility": "specific"}})
    assert status == 200, inbox
    outsider, member = auth("outsider-9", email="outsider@elsewhere.example"), auth("agent-1",
                                                                                     email="agent@mailroom.test")
    for path in (f"/api/outbound/emails/{email['id']}", f"/api/outbound/conversations/{conversation['id']}/emails",
                 f"/api/outbound/inboxes/{stack.inbox_ids['support']}/emails"):
        assert stack.get(path, headers=outsider)[0] == 404, path
        assert stack.get(path, headers=member)[0] == 200, path
        assert stack.get(path, headers=NO_AUTH)[0] == 401, path


def test_compose_with_template_snippet_inline_image_and_attachments(stack, sink):
    handler, _ = sink
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 400
    png = b"\x89PNG\r\n\x1a\n" + bytes(200)
    status, template = stack.post("/api/outbound/templates", {
        "name": "Welcome", "subject": "Welcome, {{ contact.first_name }}",
        "html": "<p>Dear {{ contact.name }},</p><p>{{ inbox.name }} here. <img src=\"cid:logo\"></p>"})
    assert status == 201, template
    status, snippet = stack.post("/api/outbound/snippets", {
        "name": "Sign-off", "shortcut": "bye", "html": "<p>Best, {{ sender.name }}</p>"})
    assert status == 201, snippet
    status, rendered = stack.post(f"/api/outbound/snippets/{snippet['id']}/render",
                                  {"inbox_id": stack.inbox_ids["support"]})
    assert status == 400 and "sender.name" in rendered["error"]["message"]  # a missing token is a clear error
    status, strict = stack.post("/api/outbound/snippets", {
        "name": "Lenient", "html": "<p>Hi {{ contact.nickname }}!</p>", "on_missing": "empty"})
    assert stack.post(f"/api/outbound/snippets/{strict['id']}/render", {})[1]["html"] == "<p>Hi !</p>"

    with EventSubscriber(stack.amqp_uri, EVENTS) as events:
        status, email = stack.post(f"/api/outbound/inboxes/{stack.inbox_ids['support']}/emails", {
            "to": [{"email": "zoe@example.com", "name": "Zoë Ångström"}], "template_id": template["id"],
            "inserts": [{"kind": "meeting", "url": "https://meet.example/zoe", "title": "Kick-off"},
                        {"kind": "article", "url": "https://kb.example/start", "title": "Getting started"}],
            "attachments": [
                {"filename": "Angebot für Zoë.pdf", "content_type": "application/pdf",
                 "content_base64": base64.b64encode(pdf).decode()},
                {"filename": "logo.png", "content_type": "image/png", "inline": True, "content_id": "logo",
                 "content_base64": base64.b64encode(png).decode()}]},
            headers={"Idempotency-Key": "compose-1"})
        assert status == 202, email
        email_in_state(stack, email["id"], "sent")
        created = events.wait_for("conversation_created",
                                  lambda e: e["data"]["conversation_id"] == email["conversation_id"])
    assert created[0]["data"]["contact_email"] == "zoe@example.com"
    [received] = handler.with_message_id(email["message_id"])
    message = received["message"]
    assert str(message["Subject"]) == "Welcome, Zoë"
    html = message.get_body(("html",)).get_content()
    assert "Dear Zoë Ångström," in html and "Support here." in html and "https://meet.example/zoe" in html
    assert "Kick-off (https://meet.example/zoe)" in message.get_body(("plain",)).get_content()
    attachments = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
    assert hashlib.sha256(attachments["Angebot für Zoë.pdf"]).hexdigest() == hashlib.sha256(pdf).hexdigest()
    inline = [p for p in message.walk() if p["Content-ID"] == "<logo>"]
    assert inline and inline[0].get_content() == png
    # the conversation exists with our message; the timeline has the attachments
    conversation = stack.eventually(lambda: stack.get(f"/api/conversations/{email['conversation_id']}")[1]
                                    if stack.get(f"/api/conversations/{email['conversation_id']}")[0] == 200 else None)
    assert conversation["messages"][0]["rfc_message_id"] == email["message_id"]
    [entry] = stack.eventually(lambda: timeline(stack, "zoe@example.com"))
    by_name = {a["filename"]: a for a in entry["attachments"]}
    assert by_name["Angebot für Zoë.pdf"]["sha256"] == hashlib.sha256(pdf).hexdigest()
    status, downloaded = stack.get(by_name["Angebot für Zoë.pdf"]["url"])
    assert status == 200 and downloaded == pdf
    # the same idempotency key again: the same email, sent once
    status, again = stack.post(f"/api/outbound/inboxes/{stack.inbox_ids['support']}/emails", {
        "to": [{"email": "zoe@example.com", "name": "Zoë Ångström"}], "template_id": template["id"],
        "inserts": [{"kind": "meeting", "url": "https://meet.example/zoe", "title": "Kick-off"},
                    {"kind": "article", "url": "https://kb.example/start", "title": "Getting started"}],
        "attachments": [
            {"filename": "Angebot für Zoë.pdf", "content_type": "application/pdf",
             "content_base64": base64.b64encode(pdf).decode()},
            {"filename": "logo.png", "content_type": "image/png", "inline": True, "content_id": "logo",
             "content_base64": base64.b64encode(png).decode()}]}, headers={"Idempotency-Key": "compose-1"})
    assert status == 200 and again["id"] == email["id"]
    status, conflict = stack.post(f"/api/outbound/inboxes/{stack.inbox_ids['support']}/emails", {
        "to": ["other@example.com"], "subject": "x", "text": "y"}, headers={"Idempotency-Key": "compose-1"})
    assert status == 409, conflict
    time.sleep(1)
    assert len(handler.with_message_id(email["message_id"])) == 1


def test_header_injection_and_bad_input_are_refused_with_clear_errors(stack, sink):
    handler, _ = sink
    url = f"/api/outbound/inboxes/{stack.inbox_ids['support']}/emails"
    attempts = [
        ({"to": ["ada@example.com"], "subject": "Hi\r\nBcc: victim@example.com", "text": "x"}, "subject"),
        ({"to": ["ada@example.com"], "subject": "hi=?UTF-8?Q?=0A?=Bcc: injected@example.com", "text": "x"},
         "CVE-2024-6923"),
        ({"to": [{"email": "ada@example.com", "name": "Ada\nBcc: victim@example.com"}], "subject": "Hi",
          "text": "x"}, "to[0].name"),
        ({"to": ["ada@example.com\r\nBcc: victim@example.com"], "subject": "Hi", "text": "x"}, "to[0]"),
        ({"to": ["ada@example.com, victim@example.com"], "subject": "Hi", "text": "x"}, "to[0]"),
        ({"to": ["ada@example.com"], "subject": "Hi", "text": "x", "attachments": [
            {"filename": "a.txt\r\nX-Evil: 1", "content_base64": "aGk="}]}, "filename"),
        ({"to": ["ada@example.com"], "subject": "Hi", "text": "x", "from": "ceo@elsewhere.example"}, "from"),
        ({"to": ["ada@example.com"], "subject": "Hi", "html": "<img src=\"cid:missing\">"}, "cid:missing"),
        ({"to": ["ada@example.com"], "subject": "Hi", "text": "x", "attachments": [
            {"filename": "big.bin", "content_base64": base64.b64encode(bytes(11 * 1024 * 1024)).decode()}]},
         "over the limit"),
    ]
    for body, expected in attempts:
        status, answer = stack.post(url, body)
        assert status == 400, (body.get("subject"), answer)
        assert expected in answer["error"]["message"], answer
    time.sleep(1)
    assert handler.accepted == []


def test_4xx_is_retried_then_delivered_and_5xx_fails_with_its_reason(stack, sink):
    handler, _ = sink
    conversation, _ = start_conversation(stack)
    handler.answers = ["451 4.3.0 Mailbox busy, try again later"]
    with EventSubscriber(stack.amqp_uri, EVENTS) as events:
        status, email = stack.post(f"/api/outbound/conversations/{conversation['id']}/replies", {"text": "Soon."})
        assert status == 202, email
        deferred = events.wait_for("email_deferred", lambda e: e["data"]["email_id"] == email["id"])
        assert deferred[0]["data"]["smtp_code"] == 451
        sent = email_in_state(stack, email["id"], "sent")
        assert sent["attempts"] == 2
        assert [a["outcome"] for a in sent["delivery_attempts"]] == ["temporary", "sent"]

        handler.answers = ["550 5.1.1 <ada@example.com>: Recipient address rejected: no such user"]
        status, doomed = stack.post(f"/api/outbound/conversations/{conversation['id']}/replies", {"text": "Hello?"})
        failed = email_in_state(stack, doomed["id"], "failed")
        assert "550 5.1.1" in failed["last_error"] and failed["attempts"] == 1
        events.wait_for("email_failed", lambda e: e["data"]["email_id"] == doomed["id"])
    assert len(handler.with_message_id(email["message_id"])) == 1
    assert handler.with_message_id(doomed["message_id"]) == []

    def failure_shown():
        found = stack.get(f"/api/conversations/{conversation['id']}")[1]
        ours = [m for m in found["messages"] if m["rfc_message_id"] == doomed["message_id"]]
        return ours and any(r.startswith("delivery:failed") and "550" in r for r in ours[0]["flags"]["reasons"])
    stack.eventually(failure_shown)
    status, failed_list = stack.get(f"/api/outbound/conversations/{conversation['id']}/emails")
    assert {e["id"]: e["state"] for e in failed_list["items"]} == {email["id"]: "sent", doomed["id"]: "failed"}

    # the delivery failure rate an operator's alert reads
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.ports['outbound']}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    for state, count in (("deferred", 1), ("sent", 1), ("failed", 1)):
        assert f'mailroom_deliveries_total{{channel="email",state="{state}"}} {count}.0' in metrics, state
    assert 'mailroom_delivery_duration_seconds_count{channel="email"} 3.0' in metrics


def dsn_for(original_message_id: str, recipient: str) -> bytes:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
        f"To: {SUPPORT}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <dsn-{uuid.uuid4().hex}@mx.example.net>\r\n"
        "Date: Wed, 25 Nov 2026 11:00:00 +0000\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\n"
        f"<{recipient}>: host mx.example.net said: 550 5.1.1 User unknown\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {SUPPORT}\r\nTo: {recipient}\r\nSubject: Re: Where is my order?\r\n"
        f"Message-ID: <{original_message_id}>\r\n\r\n"
        "--B--\r\n").encode()


def test_a_dsn_arriving_through_ingest_marks_the_sent_email_bounced(stack, sink, rabbit_admin):
    with EventSubscriber(stack.amqp_uri, [("ingest.events", "delivery_report_received")]) as reports:
        conversation, _ = start_conversation(stack)  # an ordinary inbound email: no delivery report
        status, email = stack.post(f"/api/outbound/conversations/{conversation['id']}/replies", {"text": "Hi"})
        assert status == 202, email
        email_in_state(stack, email["id"], "sent")
        with EventSubscriber(stack.amqp_uri, EVENTS) as events:
            _, accepted = deliver_to_ingest(stack, dsn_for(email["message_id"], "ada@example.com"))
            bounced = email_in_state(stack, email["id"], "bounced")
            [bounce] = events.wait_for("email_bounced", lambda e: e["data"]["email_id"] == email["id"])
        # the one report is the DSN's (the ordinary email's message_received was published before it)
        [report] = reports.wait_for("delivery_report_received")
    assert report["data"]["intake_id"] in accepted["intake_ids"]
    assert report["data"]["bounced_message_ids"] == [email["message_id"]]
    assert "5.1.1" in bounced["bounce_reason"] and "5.1.1" in report["data"]["reason"]
    assert (bounce["data"]["bounce_intake_id"], bounce["data"]["bounce_raw_url"]) == (
        report["data"]["intake_id"], report["data"]["raw_url"])
    # #16: outbound's queue is bound to bounce reports only; message_received reaches contacts and
    # conversations alone (its copy for outbound was every inbound message, persisted)
    vhost = urllib.parse.quote(urllib.parse.unquote(urllib.parse.urlsplit(stack.amqp_uri).path.lstrip("/")), safe="")
    bindings = json.loads(rabbit_admin._api("GET", f"/api/exchanges/{vhost}/ingest.events/bindings/source"))
    by_key = {}
    for binding in bindings:
        if binding["destination"].startswith("evt-"):
            by_key.setdefault(binding["routing_key"], set()).add(binding["destination"])
    assert by_key["message_received"] == {"evt-ingest-message_received--contacts.handle_message_received",
                                          "evt-ingest-message_received--conversations.handle_message_received"}
    assert by_key["delivery_report_received"] == {
        "evt-ingest-delivery_report_received--outbound.handle_delivery_report_received"}

    def bounce_shown():
        found = stack.get(f"/api/conversations/{conversation['id']}")[1]
        ours = [m for m in found["messages"] if m["rfc_message_id"] == email["message_id"]]
        return ours and any(r.startswith("delivery:bounced") for r in ours[0]["flags"]["reasons"])
    stack.eventually(bounce_shown)


def test_killing_the_worker_mid_send_loses_nothing_and_keeps_the_message_id(stack, sink):
    handler, _ = sink
    conversation, _ = start_conversation(stack)
    handler.stall = True
    status, email = stack.post(f"/api/outbound/conversations/{conversation['id']}/replies", {"text": "Crash test"})
    assert status == 202, email
    assert handler.stalling.wait(30), "the worker never reached DATA"
    stack.kill_process("outbound")  # SIGKILL while the relay holds the DATA answer
    handler.stall = False
    handler.release.set()
    stack.restart_process("outbound")
    sent = email_in_state(stack, email["id"], "sent", timeout=60)
    copies = handler.with_message_id(email["message_id"])
    assert 1 <= len(copies) <= 2  # at-least-once (RFC 1047): a resend keeps the Message-ID
    assert all(c["message"]["Message-ID"] == f"<{email['message_id']}>" for c in copies)
    assert sent["attempts"] == 2
    assert {c["raw"] for c in copies} == {copies[0]["raw"]}  # the very same bytes


def test_a_relay_holding_one_email_does_not_hold_back_the_others(stack_factory, sink, tmp_path):
    """Delivery runs several sends at once: while the relay sits on one DATA (a slow content
    check, a tarpit), the next reply is still delivered."""
    # the held send neither times out nor loses its lease while the test runs
    stack = start_stack(stack_factory, sink, tmp_path, OUTBOUND_SEND_LEASE_SECONDS="120", OUTBOUND_SMTP_TIMEOUT="120")
    handler, _ = sink
    conversation, _ = start_conversation(stack)
    handler.stall = True
    status, slow = stack.post(f"/api/outbound/conversations/{conversation['id']}/replies", {"text": "First"})
    assert status == 202, slow
    assert handler.stalling.wait(30), "the worker never reached DATA"
    status, other = stack.post(f"/api/outbound/conversations/{conversation['id']}/replies", {"text": "Second"})
    assert status == 202, other
    email_in_state(stack, other["id"], "sent")
    assert handler.with_message_id(slow["message_id"]) == []  # still held by the relay
    handler.release.set()
    email_in_state(stack, slow["id"], "sent")
    assert len(handler.with_message_id(other["message_id"])) == 1


def test_forward_to_another_team_and_to_any_address(stack, sink):
    handler, _ = sink
    conversation, customer_id = start_conversation(stack)
    status, quoted = stack.post(f"/api/outbound/conversations/{conversation['id']}/forwards", {
        "to": ["partner@example.org"], "text": "FYI, can you check stock?"})
    assert status == 202, quoted
    email_in_state(stack, quoted["id"], "sent")
    [received] = handler.with_message_id(quoted["message_id"])
    assert str(received["message"]["Subject"]) == "Fwd: Where is my order?"
    text = received["message"].get_body(("plain",)).get_content()
    assert "FYI, can you check stock?" in text and "Forwarded message" in text and "my order #42" in text

    status, attached = stack.post(f"/api/outbound/conversations/{conversation['id']}/forwards", {
        "to": [BILLING], "mode": "attach", "text": "Billing: please refund."})
    assert status == 202, attached
    email_in_state(stack, attached["id"], "sent")
    [received] = handler.with_message_id(attached["message_id"])
    originals = [p.get_content() for p in received["message"].iter_attachments()
                 if p.get_content_type() == "message/rfc822"]
    # the whole conversation, oldest first: the customer's message, then our first forward
    assert [o["Message-ID"] for o in originals] == [f"<{customer_id}>", f"<{quoted['message_id']}>"]
    assert "my order #42" in originals[0].get_body(("plain",)).get_content()
    assert received["rcpt_tos"] == [BILLING]
