"""One email to several team inboxes is one conversation (issue #17, docs/architecture.md), across
real processes (ingest + its SMTP listener, contacts, conversations, outbound; RabbitMQ,
PostgreSQL) and a real SMTP relay (aiosmtpd):

* one SMTP transaction with RCPT to two inbox addresses → one conversation, in both inboxes'
  lists; a member of the second inbox only assigns and closes it; an admin who is a member of
  neither views it read-only; the contact's timeline holds one entry naming both inboxes; a reply
  leaves once (one message at the relay);
* the same email delivered separately to each inbox (SMTP to one, the HTTP intake to the other)
  → one conversation;
* the same Message-ID from another sender (a spoof) → its own conversation in the other inbox."""

import email.parser
import sys
import threading
import urllib.parse
import uuid
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST, OUTBOUND
from mailroom_testing.stack import free_port
from mailroom_testing.tokens import ACCOUNT_ACCESS, auth

pytestmark = pytest.mark.integration

BILLING, SALES = "billing@mailroom.test", "sales@mailroom.test"
BILLING_AGENT = auth("agent-billing", email="agent-billing@mailroom.test")
SALES_AGENT = auth("agent-sales", email="agent-sales@mailroom.test")
ADMIN = auth("auditor", roles=(ACCOUNT_ACCESS,))  # a member of neither inbox


class Relay:
    def __init__(self):
        self.accepted: list[tuple[list[str], bytes]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        with self._lock:
            self.accepted.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 2.0.0 Ok: queued"


@pytest.fixture
def stack(stack_factory, tmp_path):
    relay = Relay()
    controller = Controller(relay, hostname="127.0.0.1", port=free_port())
    controller.start()
    inboxes = tmp_path / "inboxes.yaml"
    inboxes.write_text(f"""
inboxes:
  - key: billing
    name: Billing
    channels: [{{address: {BILLING}, name: Billing, primary: true}}]
    members: [{{user_id: agent-billing, email: agent-billing@mailroom.test}}]
    access: {{visibility: specific}}
  - key: sales
    name: Sales
    channels: [{{address: {SALES}, name: Sales, primary: true}}]
    members: [{{user_id: agent-sales, email: agent-sales@mailroom.test}}]
    access: {{visibility: specific}}
""")
    smtp_port = free_port()
    started = stack_factory([INGEST, CONTACTS, CONVERSATIONS, OUTBOUND], extra_env={
        "CONVERSATIONS_INBOXES_FILE": str(inboxes), "INGEST_SMTP_PORT": str(smtp_port),
        "OUTBOUND_SMTP_HOST": "127.0.0.1", "OUTBOUND_SMTP_PORT": str(controller.port),
        "OUTBOUND_POLL_SECONDS": "0.2", "MAILROOM_MESSAGE_ID_DOMAIN": "mailroom.test"})
    started.start_process("smtp", [sys.executable, "-m", "ingest.smtp_listener"], port=smtp_port)
    started.smtp_port = smtp_port
    started.eventually(lambda: started.get("/health/ingest")[1].get("channels") == 2, timeout=30)
    started.inbox = {i["key"]: i["id"] for i in started.get("/api/inboxes")[1]["items"]}
    for headers in (BILLING_AGENT, SALES_AGENT, ADMIN):  # conversations knows the users
        assert started.get("/api/inboxes", headers=headers)[0] == 200
    started.relay = relay
    yield started
    controller.stop()


def mail(sender: str, subject: str, text: str, message_id: str | None = None, to=(BILLING, SALES)) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Message-ID"] = f"<{message_id or uuid.uuid4()}@customer.example>"
    message.set_content(text)
    return message


def smtp(stack, message: EmailMessage, recipients) -> None:
    import smtplib

    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as client:
        client.sendmail(message["From"], list(recipients), message.as_bytes())


def http(stack, message: EmailMessage, channel: str) -> None:
    status, body = stack.post(f"/api/ingest/channels/{channel}/messages", raw=message.as_bytes())
    assert status == 202, body


def listed(stack, key, subject):
    page = stack.get(f"/api/inboxes/{stack.inbox[key]}/conversations?view=all&limit=50")[1]
    return [c for c in page["items"] if c["subject"] == subject]


def contact_of(stack, address):
    items = stack.get(f"/api/contacts?email={urllib.parse.quote(address)}")[1]["items"]
    return items[0] if items else None


def test_one_email_to_two_inboxes_is_one_conversation_acted_on_from_either(stack):
    smtp(stack, mail("Ada Lovelace <ada@example.com>", "Invoice and a quote", "Two questions."), [BILLING, SALES])
    [conversation] = stack.eventually(lambda: listed(stack, "billing", "Invoice and a quote"), timeout=30)
    stack.eventually(lambda: listed(stack, "sales", "Invoice and a quote"), timeout=30)
    assert [c["id"] for c in listed(stack, "sales", "Invoice and a quote")] == [conversation["id"]]
    url = f"/api/conversations/{conversation['id']}"
    detail = stack.eventually(lambda: (lambda d: d if len(d.get("inbox_ids", [])) == 2 else None)(
        stack.get(url, headers=SALES_AGENT)[1]), timeout=30)
    # the copy processed first made its inbox the home inbox (listed first)
    assert sorted(detail["inbox_ids"]) == sorted([stack.inbox["billing"], stack.inbox["sales"]])
    home = BILLING if detail["inbox_ids"][0] == stack.inbox["billing"] else SALES
    assert detail["message_count"] == 1 and detail["permissions"] == {"view": True, "act": True}
    assert stack.get(f"/api/inboxes/{stack.inbox['sales']}/views", headers=SALES_AGENT)[1]["open"] == 1

    # a member of Sales only acts on it: assigns it (to Billing's member), comments, closes it
    status, body = stack.post(f"{url}/assign", {"assignee_user_id": "agent-billing"}, headers=SALES_AGENT)
    assert status == 200, body
    assert stack.post(f"{url}/comments", {"body": "Billing has it"}, headers=SALES_AGENT)[0] == 201
    # an admin of the account, member of neither: views, never acts
    assert stack.get(url, headers=ADMIN)[1]["permissions"] == {"view": True, "act": False}
    status, body = stack.post(f"{url}/close", {}, headers=ADMIN)
    assert status == 403 and "only its members can act" in body["error"]["message"]
    assert stack.post(f"{url}/close", {}, headers=SALES_AGENT)[0] == 200
    closed = stack.get(url, headers=BILLING_AGENT)[1]
    assert closed["status"] == "closed" and closed["assignee_user_id"] == "agent-billing"

    # the contact's timeline: one entry, naming both inboxes, linked to the one conversation
    ada = stack.eventually(lambda: contact_of(stack, "ada@example.com"), timeout=30)

    def entries():
        items = stack.get(f"/api/contacts/{ada['id']}/timeline")[1]["items"]
        return items if items and len(items[0].get("inbox_ids", [])) == 2 and items[0]["conversation_id"] else None

    [entry] = stack.eventually(entries, timeout=30)
    assert set(entry["inbox_ids"]) == {stack.inbox["billing"], stack.inbox["sales"]}
    assert set(entry["channel_addresses"]) == {BILLING, SALES} and entry["conversation_id"] == conversation["id"]
    # each inbox's member sees the one entry, naming only the inbox they may see
    [seen_by_sales] = stack.get(f"/api/contacts/{ada['id']}/timeline", headers=SALES_AGENT)[1]["items"]
    assert seen_by_sales["inbox_ids"] == [stack.inbox["sales"]] and seen_by_sales["channel_address"] == SALES

    # a reply by Sales' member (reply-all) goes out once, from the conversation's home inbox
    status, reply = stack.post(f"/api/outbound/conversations/{conversation['id']}/replies",
                               {"text": "Both answered here.", "reply_all": True}, headers=SALES_AGENT)
    assert status in (200, 201, 202), reply
    stack.eventually(lambda: stack.get(f"/api/outbound/emails/{reply['id']}")[1].get("state") == "sent", timeout=60)
    [(recipients, raw)] = stack.relay.accepted
    sent = email.parser.BytesHeaderParser().parsebytes(raw)
    assert "ada@example.com" in recipients and home in sent["From"]
    detail = stack.eventually(lambda: (lambda d: d if d["message_count"] == 2 else None)(
        stack.get(url, headers=SALES_AGENT)[1]), timeout=30)
    assert [m["direction"] for m in detail["messages"]] == ["in", "out"]


def test_the_same_email_delivered_separately_is_one_conversation_a_spoof_is_not(stack):
    original = mail("Bo <bo@example.com>", "Contract renewal", "Please renew.", message_id="renewal-1")
    smtp(stack, original, [BILLING])
    [conversation] = stack.eventually(lambda: listed(stack, "billing", "Contract renewal"), timeout=30)
    http(stack, original, SALES)  # the same email, fetched for Sales another way
    stack.eventually(lambda: listed(stack, "sales", "Contract renewal"), timeout=30)
    assert listed(stack, "sales", "Contract renewal")[0]["id"] == conversation["id"]

    # the same Message-ID, subject and text from someone else, to Sales: not the original's conversation
    # (ingest itself keeps one message per inbox address and Message-ID: the original went to Billing only)
    genuine = mail("Bo <bo@example.com>", "Quote 7", "The numbers.", message_id="quote-7")
    smtp(stack, genuine, [BILLING])
    [quote] = stack.eventually(lambda: listed(stack, "billing", "Quote 7"), timeout=30)
    spoof = mail("Mallory <mallory@evil.example>", "Quote 7", "The numbers.", message_id="quote-7")
    smtp(stack, spoof, [SALES])
    [theirs] = stack.eventually(lambda: listed(stack, "sales", "Quote 7"), timeout=30)
    assert theirs["id"] != quote["id"] and theirs["contact"]["email"] == "mallory@evil.example"
    assert stack.get(f"/api/conversations/{theirs['id']}")[1]["inbox_ids"] == [stack.inbox["sales"]]
    assert stack.get(f"/api/conversations/{quote['id']}")[1]["inbox_ids"] == [stack.inbox["billing"]]
    assert [c["id"] for c in listed(stack, "billing", "Quote 7")] == [quote["id"]]
