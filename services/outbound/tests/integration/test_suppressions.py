"""The suppression list across real processes (outbound, conversations, contacts, ingest; RabbitMQ,
PostgreSQL) with a real SMTP relay (aiosmtpd) that refuses chosen recipients at RCPT TO with a 5xx:
the refused recipient is suppressed for the inbox, compose, reply and forward naming it answer 422
naming it and send nothing, a member lifts it (others cannot), and a DSN arriving through ingest
bounces the email for the recipient it names only (`email_bounced.recipients`, `partial`)."""

import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST, OUTBOUND
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.team import SUPPORT, SUPPORT_INBOX, MailSink, relay_env, running, start_with_inboxes
from mailroom_testing.tokens import NO_AUTH, auth

pytestmark = pytest.mark.integration

INBOXES = SUPPORT_INBOX
EVENTS = [("outbound.events", "#"), ("conversations.events", "#")]
MEMBER, STRANGER = auth("agent-l"), auth("stranger")


class Relay(MailSink):
    """The relay: refuses the addresses in `refuse` at RCPT TO (550 5.1.1), records what it accepts."""

    def delivered(self, message_id: str) -> list[list[str]]:
        return [m["rcpt_tos"] for m in self.accepted if m["message"]["Message-ID"] == f"<{message_id}>"]


@pytest.fixture
def relay():
    with running(Relay()) as handler:
        yield handler, handler.port


@pytest.fixture
def stack(stack_factory, relay, tmp_path):
    started = start_with_inboxes(stack_factory, [OUTBOUND, CONVERSATIONS, CONTACTS, INGEST], INBOXES, tmp_path,
                                 relay_env(relay[0], OUTBOUND_SMTP_TIMEOUT="20", OUTBOUND_RETRY_BASE_SECONDS="0.5"))
    started.support = started.inbox_id
    return started


def email_in_state(stack, email_id, state, timeout=30):
    def probe():
        status, email = stack.get(f"/api/outbound/emails/{email_id}")
        return email if status == 200 and email["state"] == state else None
    return stack.eventually(probe, timeout=timeout)


def start_conversation(stack):
    message_id = f"{uuid.uuid4().hex}@example.com"
    raw = (f"From: Ada <ada@example.com>\r\nTo: {SUPPORT}\r\nCc: Bob <bob@example.com>\r\n"
           f"Subject: Where is my order?\r\nMessage-ID: <{message_id}>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\nHello, my order is late.\r\n").encode()
    deliver_to_ingest(stack, raw)

    def find():
        status, page = stack.get(f"/api/inboxes/{stack.support}/conversations?view=all")
        for summary in page.get("items", []) if status == 200 else []:
            conversation = stack.get(f"/api/conversations/{summary['id']}")[1]
            if any(m["rfc_message_id"] == message_id for m in conversation["messages"]):
                return conversation
        return None
    return stack.eventually(find, timeout=30)


def deliver_to_ingest(stack, raw: bytes):
    def post():
        status, body = stack.post(f"/api/ingest/channels/{SUPPORT}/messages", raw=raw)
        return (status, body) if status < 300 else None
    return stack.eventually(post, timeout=30)


def suppressed(stack, inbox_id, **kwargs):
    status, page = stack.get(f"/api/outbound/inboxes/{inbox_id}/suppressions", **kwargs)
    assert status == 200, page
    return {s["address"]: s for s in page["items"]}


def lift(stack, inbox_id, address, headers=None) -> int:
    """DELETE's status (a 204 has no body, which Stack.request would read as JSON)."""
    path = f"/api/outbound/inboxes/{inbox_id}/suppressions/{urllib.parse.quote(address, safe='')}"
    request = urllib.request.Request(stack.url(path), method="DELETE")
    for key, value in {**stack.default_headers, **(headers or {})}.items():
        if value:
            request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_recipient_refused_with_a_5xx_is_suppressed_until_lifted_and_sends_naming_it_are_refused(stack, relay):
    handler, _ = relay
    handler.refuse = {"bob@example.com"}
    conversation = start_conversation(stack)
    compose = f"/api/outbound/inboxes/{stack.support}/emails"
    status, email = stack.post(compose, {"to": ["ada@example.com"], "cc": ["bob@example.com"], "subject": "Hi",
                                         "text": "Hello both"}, headers={"Idempotency-Key": "first"})
    assert status == 202, email
    sent = email_in_state(stack, email["id"], "sent")
    assert handler.delivered(email["message_id"]) == [["ada@example.com"]]
    assert any(r.startswith("bob@example.com: 550") for r in sent["refused_recipients"])
    entry = stack.eventually(lambda: suppressed(stack, stack.support).get("bob@example.com"))
    assert entry["source"] == "smtp" and entry["status"] == "550" and entry["email_id"] == email["id"]
    assert "5.1.1" in entry["reason"]

    attempts = [
        (compose, {"to": ["Bob@Example.COM"], "subject": "Again", "text": "x"}),
        (compose, {"to": ["carol@example.com"], "bcc": [{"email": "bob@example.com", "name": "Bob"}],
                   "subject": "x", "text": "x"}),
        (f"/api/outbound/conversations/{conversation['id']}/replies", {"text": "All of you", "reply_all": True}),
        (f"/api/outbound/conversations/{conversation['id']}/replies", {"text": "x", "add_to": ["bob@example.com"]}),
        (f"/api/outbound/conversations/{conversation['id']}/forwards", {"to": ["bob@example.com"]}),
    ]
    for path, body in attempts:
        status, answer = stack.post(path, body)
        assert status == 422, (path, body, answer)
        assert answer["error"]["code"] == "recipient_suppressed" and "bob@example.com" in answer["error"]["message"]
        assert [s["address"] for s in answer["error"]["details"]["suppressed"]] == ["bob@example.com"]
    # the first request again (its Idempotency-Key): the same email, not a refusal and not a second send
    status, again = stack.post(compose, {"to": ["ada@example.com"], "cc": ["bob@example.com"], "subject": "Hi",
                                         "text": "Hello both"}, headers={"Idempotency-Key": "first"})
    assert status == 200 and again["id"] == email["id"]
    status, emails = stack.get(f"/api/outbound/inboxes/{stack.support}/emails")
    assert [e["id"] for e in emails["items"]] == [email["id"]]  # nothing else was queued

    # hostile and malformed input to the list and the lift
    assert lift(stack, stack.support, "bob@example.com\r\nX-Evil: 1") == 400
    assert lift(stack, stack.support, "not-an-address") == 400
    assert lift(stack, stack.support, "x" * 400 + "@example.com") == 400
    assert lift(stack, stack.support, "carol@example.com") == 404  # not suppressed
    assert lift(stack, str(uuid.uuid4()), "bob@example.com") == 404  # no such inbox
    assert lift(stack, stack.support, "bob@example.com", headers=NO_AUTH) == 401
    assert stack.get(f"/api/outbound/inboxes/{stack.support}/suppressions?cursor=garbage")[0] == 400

    assert lift(stack, stack.support, "BOB@example.com", headers=auth("agent-1")) == 204
    assert lift(stack, stack.support, "bob@example.com", headers=auth("agent-1")) == 404  # lifted already
    assert suppressed(stack, stack.support) == {}
    history = stack.get(f"/api/outbound/inboxes/{stack.support}/suppressions?include_lifted=true")[1]["items"]
    assert [(h["address"], h["lifted_by"]) for h in history] == [("bob@example.com", "agent-1")]
    handler.refuse = set()
    status, later = stack.post(compose, {"to": ["bob@example.com"], "subject": "Back", "text": "x"})
    assert status == 202, later
    email_in_state(stack, later["id"], "sent")
    assert handler.delivered(later["message_id"]) == [["bob@example.com"]]


def test_only_members_lift_and_only_viewers_list_an_inbox_suppressions(stack, relay):
    handler, _ = relay
    status, legal = stack.post("/api/inboxes", {
        "name": "Legal", "channels": [{"address": "legal@mailroom.test"}],
        "members": [{"user_id": "agent-l", "email": "agent-l@mailroom.test"}], "access": {"visibility": "specific"}})
    assert status == 201, legal
    handler.refuse = {"eve@example.com"}

    def composed():
        status, email = stack.post(f"/api/outbound/inboxes/{legal['id']}/emails",
                                   {"to": ["eve@example.com"], "subject": "Notice", "text": "x"}, headers=MEMBER)
        return email if status == 202 else None
    email = stack.eventually(composed, timeout=30)  # conversations announces the new inbox asynchronously
    failed = email_in_state(stack, email["id"], "failed")  # the only recipient refused: failed, and suppressed
    assert "550" in failed["last_error"]
    assert "eve@example.com" in stack.eventually(lambda: suppressed(stack, legal["id"], headers=MEMBER))
    assert suppressed(stack, stack.support) == {}  # per inbox
    assert suppressed(stack, legal["id"]).keys() == {"eve@example.com"}  # the super admin views it ...
    assert lift(stack, legal["id"], "eve@example.com") == 403  # ... but is not a member: cannot lift
    assert stack.get(f"/api/outbound/inboxes/{legal['id']}/suppressions", headers=STRANGER)[0] == 404
    assert lift(stack, legal["id"], "eve@example.com", headers=STRANGER) == 404
    assert lift(stack, legal["id"], "eve@example.com", headers=MEMBER) == 204
    assert suppressed(stack, legal["id"], headers=MEMBER) == {}


def dsn(original_message_id: str, recipients: list[tuple[str, str, str]]) -> bytes:
    blocks = "".join(f"Final-Recipient: rfc822; {email}\r\nAction: {action}\r\nStatus: {status}\r\n"
                     f"Diagnostic-Code: smtp; {'550' if status.startswith('5') else '451'} {status} "
                     f"mailbox says no\r\n\r\n" for email, action, status in recipients)
    return ("From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
            f"To: {SUPPORT}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
            f"Message-ID: <dsn-{uuid.uuid4().hex}@mx.example.net>\r\nDate: Wed, 25 Nov 2026 11:00:00 +0000\r\n"
            "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
            "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"
            "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
            f"{blocks}--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
            f"From: {SUPPORT}\r\nSubject: Re: Where is my order?\r\nMessage-ID: <{original_message_id}>\r\n\r\n"
            "--B--\r\n").encode()


def test_a_dsn_for_one_recipient_bounces_only_that_one_and_suppresses_it(stack, relay):
    conversation = start_conversation(stack)
    status, email = stack.post(f"/api/outbound/conversations/{conversation['id']}/replies",
                               {"text": "Both of you", "reply_all": True})
    assert status == 202, email
    assert {a["email"] for a in email["to"] + email["cc"]} == {"ada@example.com", "bob@example.com"}
    email_in_state(stack, email["id"], "sent")
    mine = lambda e: e["data"]["email_id"] == email["id"]  # noqa: E731
    with EventSubscriber(stack.amqp_uri, EVENTS) as events:
        deliver_to_ingest(stack, dsn(email["message_id"], [("bob@example.com", "failed", "5.1.1"),
                                                           ("ada@example.com", "delayed", "4.4.1")]))
        [bounced] = events.wait_for("email_bounced", mine)
        assert bounced["data"]["partial"] is True
        assert [(r["email"], r["status"], r["suppressed"]) for r in bounced["data"]["recipients"]] == [
            ("bob@example.com", "5.1.1", True)]
        view = stack.get(f"/api/outbound/emails/{email['id']}")[1]
        assert view["state"] == "sent" and [r["email"] for r in view["bounced_recipients"]] == ["bob@example.com"]
        entry = stack.eventually(lambda: suppressed(stack, stack.support).get("bob@example.com"))
        assert entry["source"] == "dsn" and entry["status"] == "5.1.1" and entry["bounce_intake_id"]

        def message_flags():
            found = stack.get(f"/api/conversations/{conversation['id']}")[1]
            ours = [m for m in found["messages"] if m["rfc_message_id"] == email["message_id"]]
            return ours[0]["flags"] if ours and ours[0]["flags"].get("bounced_recipients") else None
        flags = stack.eventually(message_flags)
        assert [r["email"] for r in flags["bounced_recipients"]] == ["bob@example.com"]
        assert any(r.startswith("bounced:bob@example.com") for r in flags["reasons"])
        assert any(r.startswith("delivery:sent") for r in flags["reasons"])  # still sent: ada got it

        # the same DSN again, then one reporting only a delay: neither is a new bounce; then ada's
        # failure: every recipient bounced, the email is bounced (and its event comes after those)
        deliver_to_ingest(stack, dsn(email["message_id"], [("bob@example.com", "failed", "5.1.1")]))
        deliver_to_ingest(stack, dsn(email["message_id"], [("ada@example.com", "delayed", "4.4.7")]))
        deliver_to_ingest(stack, dsn(email["message_id"], [("ada@example.com", "failed", "5.2.1")]))
        events.wait_for("email_bounced", lambda e: mine(e) and not e["data"]["partial"])
        all_bounces = [e["data"] for e in events.of_type("email_bounced") if mine(e)]
    assert [([r["email"] for r in b["recipients"]], b["partial"]) for b in all_bounces] == [
        (["bob@example.com"], True), (["ada@example.com"], False)]
    assert email_in_state(stack, email["id"], "bounced")["bounce_reason"].endswith("mailbox says no")
    assert set(suppressed(stack, stack.support)) == {"bob@example.com", "ada@example.com"}
