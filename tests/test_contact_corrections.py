"""Contacts you can fix (issue #17), across real processes (ingest, contacts, conversations,
outbound; RabbitMQ, PostgreSQL) and a real SMTP relay (aiosmtpd):

* merging two contacts: the survivor has both addresses and both timelines, the merged one's
  conversations point at the survivor (conversations consumed `contacts_merged`), and the next
  email from the merged address lands on the survivor;
* erasing a contact (GDPR art. 17): a super admin asks, every service erases and confirms, the
  report lists what each erased, and nothing of that person is readable any more through any API
  — contact, search, timeline, conversation and message, raw download, attachment, sent email —
  while another customer's mail is untouched."""

import json
import threading
import urllib.parse
import uuid
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from cryptography.fernet import Fernet

from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST, NOTIFIER, OUTBOUND
from mailroom_testing.stack import free_port
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import ACCOUNT_ACCESS, NO_AUTH, auth

pytestmark = pytest.mark.integration

SUPPORT = "support@mailroom.test"
MEMBER = auth("agent-1", email="agent@mailroom.test")
ACCOUNT_ADMIN = auth("auditor", roles=(ACCOUNT_ACCESS,))
PDF = b"%PDF-1.7\n" + b"ada's private contract " * 40


class Relay:
    def __init__(self):
        self.accepted: list[bytes] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        with self._lock:
            self.accepted.append(envelope.original_content or envelope.content)
        return "250 2.0.0 Ok: queued"


@pytest.fixture
def stack(stack_factory, tmp_path):
    relay = Relay()
    controller = Controller(relay, hostname="127.0.0.1", port=free_port())
    controller.start()
    inboxes = tmp_path / "inboxes.yaml"
    inboxes.write_text(f"""
inboxes:
  - key: support
    name: Support
    channels: [{{address: {SUPPORT}, name: Support, primary: true}}]
    members: [{{user_id: agent-1, email: agent@mailroom.test}}]
""")
    # the notifier too: an erasure is complete once it has confirmed (tests/test_erasure_everywhere.py)
    started = stack_factory([INGEST, CONTACTS, CONVERSATIONS, OUTBOUND, NOTIFIER], extra_env={
        "NOTIFIER_SECRET_KEY": Fernet.generate_key().decode(), "MAILROOM_BLOCKING_DETECTION_SECONDS": "5",
        "CONVERSATIONS_INBOXES_FILE": str(inboxes), "OUTBOUND_SMTP_HOST": "127.0.0.1",
        "OUTBOUND_SMTP_PORT": str(controller.port), "OUTBOUND_POLL_SECONDS": "0.2",
        "MAILROOM_MESSAGE_ID_DOMAIN": "mailroom.test"})
    started.eventually(lambda: started.get("/health/ingest")[1].get("channels") == 1, timeout=30)
    [inbox] = started.get("/api/inboxes")[1]["items"]
    started.inbox_id = inbox["id"]
    started.relay = relay
    yield started
    controller.stop()


def mail(sender: str, subject: str, text: str, attachment: bytes | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4()}@example.com>"
    message.set_content(text)
    if attachment is not None:
        message.add_attachment(attachment, maintype="application", subtype="pdf", filename="contract.pdf")
    return message.as_bytes()


def deliver(stack, raw: bytes) -> str:
    status, body = stack.post(f"/api/ingest/channels/{SUPPORT}/messages", raw=raw)
    assert status == 202, body
    [intake_id] = body["intake_ids"]
    return intake_id


def contact_of(stack, email):
    items = stack.get(f"/api/contacts?email={urllib.parse.quote(email)}")[1]["items"]
    return items[0] if items else None


def conversation_with(stack, subject):
    page = stack.get(f"/api/inboxes/{stack.inbox_id}/conversations?view=all&limit=50")[1]
    return next((c for c in page["items"] if c["subject"] == subject), None)


def timeline(stack, contact_id):
    status, page = stack.get(f"/api/contacts/{contact_id}/timeline")
    return page["items"] if status == 200 else None


def test_merging_two_contacts_moves_addresses_timelines_conversations_and_future_mail(stack):
    deliver(stack, mail("Ada Lovelace <ada@example.com>", "Order 1", "first"))
    deliver(stack, mail("A. Lovelace <ada@work.example>", "Order 2", "second"))
    ada = stack.eventually(lambda: contact_of(stack, "ada@example.com"), timeout=30)
    work = stack.eventually(lambda: contact_of(stack, "ada@work.example"), timeout=30)
    second = stack.eventually(lambda: conversation_with(stack, "Order 2"), timeout=30)
    stack.eventually(lambda: stack.get(f"/api/conversations/{second['id']}")[1]["contact"]["contact_id"] == work["id"],
                     timeout=30)
    stack.eventually(lambda: len(timeline(stack, work["id"]) or []) == 1, timeout=30)

    path = f"/api/contacts/{ada['id']}/merge"
    # refusals: no token, itself, a contact that does not exist, a malformed or hostile body
    assert stack.post(path, {"contact_id": work["id"]}, headers=NO_AUTH)[0] == 401
    assert stack.post(path, {"contact_id": ada["id"]}, headers=MEMBER)[0] == 400
    assert stack.post(path, {"contact_id": str(uuid.uuid4())}, headers=MEMBER)[0] == 404
    assert stack.post(f"/api/contacts/{uuid.uuid4()}/merge", {"contact_id": work["id"]}, headers=MEMBER)[0] == 404
    assert stack.post(path, {}, headers=MEMBER)[0] == 400
    assert stack.post(path, "[1, 2]", headers=MEMBER)[0] == 400
    assert stack.post(path, {"contact_id": "x" * 5000}, headers=MEMBER)[0] == 400
    assert stack.post(path, {"contact_id": "' OR 1=1 --"}, headers=MEMBER)[0] == 404

    with EventSubscriber(stack.amqp_uri, [("contacts.events", "contacts_merged")]) as events:
        status, merged = stack.post(path, {"contact_id": work["id"]}, headers=MEMBER)
        assert status == 200, merged
        [event] = events.wait_for("contacts_merged")
    assert merged["id"] == ada["id"] and merged["name"] == "Ada Lovelace"
    assert merged["emails"] == ["ada@example.com", "ada@work.example"]
    assert event["data"] == {"survivor_id": ada["id"], "merged_id": work["id"], "name": "Ada Lovelace",
                             "emails": ["ada@example.com", "ada@work.example"],
                             "merged_emails": ["ada@work.example"], "merged_by": "agent-1"}
    # the merged contact is gone; a second merge of it (a double click) finds nothing
    assert stack.get(f"/api/contacts/{work['id']}")[0] == 404
    assert stack.post(path, {"contact_id": work["id"]}, headers=MEMBER)[0] == 404
    assert contact_of(stack, "ada@work.example")["id"] == ada["id"]
    assert sorted(e["subject"] for e in timeline(stack, ada["id"])) == ["Order 1", "Order 2"]
    # conversations re-pointed the merged contact's conversation (consumer of contacts_merged)
    stack.eventually(lambda: stack.get(f"/api/conversations/{second['id']}")[1]["contact"]["contact_id"] == ada["id"],
                     timeout=30)

    # future mail from the merged address follows the survivor
    deliver(stack, mail("A. Lovelace <ada@work.example>", "Order 3", "third"))
    stack.eventually(lambda: len(timeline(stack, ada["id"])) == 3, timeout=30)
    third = stack.eventually(lambda: conversation_with(stack, "Order 3"), timeout=30)
    stack.eventually(lambda: stack.get(f"/api/conversations/{third['id']}")[1]["contact"]["contact_id"] == ada["id"],
                     timeout=30)


def test_erasing_a_contact_leaves_nothing_of_that_person_readable(stack):
    deliver(stack, mail("Ada Lovelace <ada@example.com>", "My secret contract", "Ada's account 4711",
                        attachment=PDF))
    deliver(stack, mail("Bob Builder <bob@example.com>", "Bob's question", "Bob's text"))
    ada = stack.eventually(lambda: contact_of(stack, "ada@example.com"), timeout=30)
    bob = stack.eventually(lambda: contact_of(stack, "bob@example.com"), timeout=30)
    conversation = stack.eventually(lambda: conversation_with(stack, "My secret contract"), timeout=30)
    bobs = stack.eventually(lambda: conversation_with(stack, "Bob's question"), timeout=30)
    status, email = stack.post(f"/api/outbound/conversations/{conversation['id']}/replies",
                               {"text": "Dear Ada, your contract 4711 is renewed."}, headers=MEMBER)
    assert status in (200, 201, 202), email
    stack.eventually(lambda: stack.get(f"/api/outbound/emails/{email['id']}")[1].get("state") == "sent", timeout=60)
    stack.eventually(lambda: len(timeline(stack, ada["id"]) or []) == 2, timeout=30)  # in and out
    detail = stack.get(f"/api/conversations/{conversation['id']}", headers=MEMBER)[1]
    inbound = next(m for m in detail["messages"] if m["direction"] == "in")
    [attachment] = inbound["attachments"]
    raw_url, attachment_url = inbound["full_message_url"], attachment["url"]
    assert stack.get(raw_url, headers=NO_AUTH)[0] == 200 and stack.get(attachment_url, headers=NO_AUTH)[1] == PDF
    intake_id = inbound["intake_id"]

    path = f"/api/contacts/{ada['id']}/erase"
    # who may: super admins only (a member or an account-access user: 403; nobody: 401)
    assert stack.post(path, headers=NO_AUTH)[0] == 401
    assert stack.post(path, headers=MEMBER)[0] == 403
    assert stack.post(path, headers=ACCOUNT_ADMIN)[0] == 403
    assert stack.post(f"/api/contacts/{uuid.uuid4()}/erase")[0] == 404
    assert contact_of(stack, "ada@example.com") is not None  # refusals erased nothing

    with EventSubscriber(stack.amqp_uri, [("contacts.events", "contact_erased")]) as events:
        status, report = stack.post(path)
        assert status == 202, report
        [event] = events.wait_for("contact_erased")
    assert event["data"]["emails"] == ["ada@example.com"] and event["data"]["intake_ids"] == [intake_id]
    assert report["contact_id"] == ada["id"] and report["services"]["contacts"] == {
        "contacts": 1, "addresses": 1, "identities": 0, "timeline_entries": 2, "held_messages": 0,
        "pending_events": 0}
    # a second request (a double click): the contact is gone already
    assert stack.post(path)[0] == 404

    done = stack.eventually(lambda: (lambda r: r if r["status"] == "complete" else None)(
        stack.get(f"/api/contacts/erasures/{report['id']}")[1]), timeout=60)
    assert done["services"]["conversations"] == {"conversations": 1, "messages": 2, "attachments": 1,
                                                 "known_addresses": 1, "pending_events": 0}
    assert done["services"]["ingest"] == {"messages": 1, "raw_messages": 1, "attachments": 1,
                                          "not_yet_processed": 0, "pending_events": 0}
    assert done["services"]["notifier"]["deliveries_dropped"] == 0  # no webhook subscription here
    assert done["services"]["outbound"]["emails"] == 1
    assert stack.get(f"/api/contacts/erasures/{report['id']}", headers=MEMBER)[0] == 403
    assert stack.get(f"/api/contacts/erasures/{uuid.uuid4()}")[0] == 404

    # nothing of Ada is readable through any API, by a member or by an admin
    for headers in (MEMBER, {}):
        assert stack.get(f"/api/contacts/{ada['id']}", headers=headers)[0] == 404
        assert stack.get(f"/api/contacts/{ada['id']}/timeline", headers=headers)[0] == 404
        assert stack.get("/api/contacts?email=ada@example.com", headers=headers)[1]["items"] == []
        assert stack.get("/api/contacts?q=lovelace", headers=headers)[1]["items"] == []
        seen = [stack.get(f"/api/conversations/{conversation['id']}", headers=headers)[1],
                stack.get(f"/api/inboxes/{stack.inbox_id}/conversations?view=all", headers=headers)[1],
                stack.get(f"/api/outbound/emails/{email['id']}", headers=headers)[1],
                stack.get(f"/api/outbound/conversations/{conversation['id']}/emails", headers=headers)[1]]
        seen += [stack.get(f"/api/messages/{m['id']}", headers=headers)[1] for m in detail["messages"]]
        text = json.dumps(seen).lower()
        # (ids are hex: look for what cannot appear in one)
        for trace in ("lovelace", "ada@", "account 4711", "contract 4711", "secret contract", "contract.pdf",
                      "dear ada", intake_id):
            assert trace not in text, trace
        assert stack.get(f"/api/ingest/messages/{intake_id}/raw", headers=headers)[0] in (401, 404)
    assert stack.get(raw_url, headers=NO_AUTH)[0] in (401, 404)
    assert stack.get(attachment_url, headers=NO_AUTH)[0] in (401, 404)
    assert stack.get(f"/api/ingest/messages/{intake_id}")[0] == 404

    # Bob is untouched
    assert contact_of(stack, "bob@example.com")["id"] == bob["id"]
    assert [e["subject"] for e in timeline(stack, bob["id"])] == ["Bob's question"]
    bob_detail = stack.get(f"/api/conversations/{bobs['id']}")[1]
    assert bob_detail["subject"] == "Bob's question" and bob_detail["messages"][0]["text"].strip() == "Bob's text"
    assert stack.get(bob_detail["messages"][0]["full_message_url"], headers=NO_AUTH)[0] == 200
