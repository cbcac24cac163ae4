"""One bad email never stops the line, as a team sees it: hostile mail sent over SMTP gets a clear
answer or reaches its inbox — a message ingest cannot process shows as a placeholder (not
displayable, with the reason and the raw message), spam rules still apply — and an ordinary message
sent right after is there within seconds. An operator lists the quarantine and, after an upgrade,
runs a message again: it then shows in full. Real processes, RabbitMQ, PostgreSQL and SMTP."""

import smtplib
import uuid

import pytest

pytestmark = pytest.mark.integration

INBOX = "support@mailroom.test"


def send(stack, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as client:
        client.sendmail("sender@customer.example", [INBOX], raw)


def listed(stack, view="open") -> dict[str, dict]:
    status, body = stack.get(f"/api/inboxes/{stack.inbox_id}/conversations?view={view}")
    assert status == 200, body
    return {item["subject"]: item for item in body["items"]}


def only_message(stack, conversation_id: str) -> dict:
    [message] = stack.get(f"/api/conversations/{conversation_id}")[1]["messages"]
    return message


def params_bomb(subject: str, spam: bool = False) -> bytes:
    """The bpo-42909 shape: 50,000 parameters in one Content-Type (29 s in the stdlib parser),
    folded so that SMTP takes it (unfolded, the listener refuses the line with a clear 500)."""
    return (f"From: Mallory Customer <mallory@customer.example>\r\nTo: {INBOX}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{uuid.uuid4()}@customer.example>\r\n" + ("X-Spam-Flag: YES\r\n" if spam else "")
            + "Content-Type: text/plain" + ";\r\n " * 50_000 + "\r\n\r\nhello\r\n").encode()


def nested(subject: str, depth: int) -> bytes:
    body = "the actual question\r\n"
    for level in range(depth):
        body = (f"Content-Type: multipart/mixed; boundary=b{level}\r\n\r\n--b{level}\r\n{body}"
                f"\r\n--b{level}--\r\n")
    return (f"From: Nora Nested <nora@customer.example>\r\nTo: {INBOX}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{uuid.uuid4()}@customer.example>\r\n{body}").encode()


def ordinary(subject: str) -> bytes:
    return (f"From: Ada Customer <ada@customer.example>\r\nTo: {INBOX}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{uuid.uuid4()}@customer.example>\r\n\r\nWhere is my order?\r\n").encode()


def test_hostile_mail_reaches_the_inbox_as_a_placeholder_and_the_line_keeps_moving(mailroom):
    send(mailroom, params_bomb("Invoice attached"))
    send(mailroom, params_bomb("Cheap pills", spam=True))
    send(mailroom, ordinary("Order #42"))

    conversations = mailroom.eventually(lambda: (lambda c: c if {"Invoice attached", "Order #42"} <= set(c)
                                                 else None)(listed(mailroom)), timeout=10)
    assert only_message(mailroom, conversations["Order #42"]["id"])["displayable"] is True
    placeholder = only_message(mailroom, conversations["Invoice attached"]["id"])
    assert placeholder["displayable"] is False
    assert "more than 1000 parameters" in placeholder["quarantine_reason"]
    assert placeholder["from"] == {"name": "Mallory Customer", "email": "mallory@customer.example"}
    assert "could not be processed" in placeholder["text"]
    assert mailroom.get(placeholder["full_message_url"])[0] == 200  # the raw message is one click away

    assert "Cheap pills" not in listed(mailroom)  # spam rules still apply
    assert "Cheap pills" in mailroom.eventually(lambda: listed(mailroom, "spam"))

    status, quarantine = mailroom.get("/api/ingest/quarantine")
    assert status == 200 and len(quarantine["items"]) == 2
    assert all("parameters" in item["reason"] for item in quarantine["items"])


def test_after_an_upgrade_an_operator_runs_a_quarantined_message_again_and_it_shows_in_full(mailroom):
    send(mailroom, nested("Deeply nested question", depth=30))  # over the default depth limit (20)
    conversation = mailroom.eventually(lambda: listed(mailroom).get("Deeply nested question"))
    assert only_message(mailroom, conversation["id"])["displayable"] is False

    mailroom.extra_env["INGEST_MAX_MIME_DEPTH"] = "40"  # the "upgrade": this version can process it
    mailroom.stop_process("ingest")
    mailroom.restart_process("ingest")
    member = {"Authorization": ""}  # no token: refused
    assert mailroom.post("/api/ingest/quarantine/retry", {}, headers=member)[0] == 401
    status, retried = mailroom.post("/api/ingest/quarantine/retry", {"reason_contains": "nesting"})
    assert status == 202 and len(retried["intake_ids"]) == 1

    message = mailroom.eventually(
        lambda: (lambda m: m if m["displayable"] else None)(only_message(mailroom, conversation["id"])))
    assert "the actual question" in message["text"] and message["quarantine_reason"] is None
    assert mailroom.get("/api/ingest/quarantine")[1]["items"] == []
    assert len(listed(mailroom)) == 1  # filled in, not a second conversation
