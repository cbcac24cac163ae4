"""The ingest service as it runs in production: the nameko service and the SMTP listener as
real processes, a real SMTP client, real RabbitMQ, PostgreSQL and Dovecot."""

import email.policy
import hashlib
import smtplib
import sys
import time
import urllib.request
import uuid
from email.message import EmailMessage

import pytest
import yaml

from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import INGEST
from mailroom_testing.stack import free_port
from mailroom_testing.subscriber import EventSubscriber

pytestmark = pytest.mark.integration

CHANNEL = "support@mailroom.test"
OUR_MX = "mx.mailroom.test"  # the organisation's MX: its Authentication-Results are trusted


def start_ingest(stack_factory, extra_env=None, max_bytes=200_000):
    smtp_port = free_port()
    env = {"INGEST_SMTP_PORT": str(smtp_port), "INGEST_MAX_MESSAGE_BYTES": str(max_bytes),
           "INGEST_INTERNAL_DOMAINS": "mailroom.test", "INGEST_TRUSTED_AUTHSERV_IDS": OUR_MX, **(extra_env or {})}
    stack = stack_factory([INGEST], extra_env=env)
    stack.smtp_port = smtp_port
    publish_event(stack.amqp_uri, "inbox_updated", "inbox-1", {
        "inbox_id": "inbox-1", "name": "Support", "channel_addresses": [CHANNEL, "sales@mailroom.test"],
        "member_emails": ["agent@mailroom.test"]})
    stack.start_process("smtp", [sys.executable, "-m", "ingest.smtp_listener"], port=smtp_port)
    # the listener learns inbox addresses from the database: wait until RCPT is accepted
    stack.eventually(lambda: rcpt_code(stack, CHANNEL) == 250)
    return stack


def rcpt_code(stack, address):
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=10) as client:
        client.ehlo()
        client.mail("probe@example.com")
        return client.rcpt(address)[0]


def customer_email(subject="Order #42 missing", sender="ada@example.com", attachment=None, **headers):
    message = EmailMessage()
    message["From"] = f"Ada Customer <{sender}>"
    message["To"] = CHANNEL
    message["Subject"] = subject
    message["Message-ID"] = headers.pop("message_id", f"<{uuid.uuid4()}@example.com>")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Hello, my order has not arrived.\n")
    message.add_alternative('<p>Hello, my <b>order</b> has not arrived.<img src="https://tracker.example/p.gif">'
                            "<script>alert(1)</script></p>", subtype="html")
    if attachment:
        message.add_attachment(attachment, maintype="application", subtype="pdf", filename="facture été.pdf")
    return message


@pytest.fixture
def ingest(stack_factory):
    return start_ingest(stack_factory)


def test_mail_sent_over_smtp_is_stored_parsed_and_published(ingest):
    pdf = b"%PDF-1.4 fake invoice " + bytes(range(256)) * 20
    message = customer_email(attachment=pdf)
    sent_bytes = message.as_bytes(policy=email.policy.SMTP)  # CRLF line ends, as on the wire
    with EventSubscriber(ingest.amqp_uri, [("ingest.events", "#")]) as events:
        with smtplib.SMTP("127.0.0.1", ingest.smtp_port) as client:
            refused = client.sendmail("ada@example.com", [CHANNEL], sent_bytes)
        assert refused == {}
        [event] = events.wait_for("message_received")
    data = event["data"]
    assert event["type"] == "mailroom.message_received.v1" and event["source"] == "mailroom/ingest"
    assert data["channel_address"] == CHANNEL and data["via"] == "smtp"
    assert data["message_id"] == message["Message-ID"].strip("<>")
    assert data["sender"] == {"name": "Ada Customer", "email": "ada@example.com"}
    assert data["attributed_to"]["email"] == "ada@example.com"
    assert data["text"].startswith("Hello, my order has not arrived.")
    assert "<script" not in data["html"] and "tracker.example" not in data["html"]
    assert data["remote_images_blocked"] == 1
    assert data["flags"]["spam"] is False and data["forward"] is None
    [attachment] = data["attachments"]
    assert attachment["filename"] == "facture été.pdf"
    status, body = ingest.get(attachment["url"])
    assert status == 200 and hashlib.sha256(body).hexdigest() == hashlib.sha256(pdf).hexdigest()
    # attachments are stored without fsync: lost bytes (a crash) are extracted again from the raw message
    next((ingest.workdir / "var" / "blobs").rglob(attachment["sha256"])).unlink()
    status, body = ingest.get(attachment["url"])
    assert status == 200 and hashlib.sha256(body).hexdigest() == hashlib.sha256(pdf).hexdigest()
    status, raw = ingest.get(data["raw_url"])
    assert status == 200 and raw == sent_bytes  # byte for byte


def test_smtp_refuses_strangers_and_oversized_mail_and_never_relays(ingest):
    with smtplib.SMTP("127.0.0.1", ingest.smtp_port) as client:
        client.ehlo()
        assert int(client.esmtp_features["size"]) == 200_000
        client.mail("ada@example.com")
        code, reply = client.rcpt("victim@elsewhere.example")
        assert code == 550 and b"relaying denied" in reply
        assert client.rcpt("nobody@mailroom.test")[0] == 550
        assert client.rcpt("Support@MAILROOM.test")[0] == 250
        code, _ = client.data(b"Subject: big\r\n\r\n" + (b"x" * 98 + b"\r\n") * 3_000)
        assert code == 552


def test_the_same_message_twice_is_one_message(ingest):
    message = customer_email()
    with EventSubscriber(ingest.amqp_uri, [("ingest.events", "message_received")]) as events:
        for _ in range(2):
            with smtplib.SMTP("127.0.0.1", ingest.smtp_port) as client:
                client.send_message(message, to_addrs=[CHANNEL])
        status, body = ingest.request("POST", f"/api/ingest/channels/{CHANNEL}/messages", raw=message.as_bytes())
        assert status == 200 and body["duplicate"] is True
        later = customer_email(subject="a different one")
        with smtplib.SMTP("127.0.0.1", ingest.smtp_port) as client:
            client.send_message(later, to_addrs=[CHANNEL])
        events.wait_for("message_received", lambda e: e["data"]["subject"] == "a different one")
        assert len(events.of_type("message_received")) == 2


def test_one_message_to_two_inbox_addresses_reaches_both(ingest):
    message = customer_email()
    with EventSubscriber(ingest.amqp_uri, [("ingest.events", "message_received")]) as events:
        with smtplib.SMTP("127.0.0.1", ingest.smtp_port) as client:
            client.send_message(message, to_addrs=[CHANNEL, "sales+Tok3n_42@mailroom.test"])
        received = events.wait_for("message_received", count=2)
    by_channel = {e["data"]["channel_address"]: e["data"] for e in received}
    assert set(by_channel) == {CHANNEL, "sales@mailroom.test"}
    assert by_channel["sales@mailroom.test"]["reply_token"] == "Tok3n_42"


def test_raw_http_endpoint_accepts_mail_and_answers_bad_input_clearly(ingest):
    with EventSubscriber(ingest.amqp_uri, [("ingest.events", "message_received")]) as events:
        status, body = ingest.request("POST", f"/api/ingest/channels/{CHANNEL}/messages",
                                      raw=customer_email(subject="via webhook").as_bytes())
        assert status == 202 and len(body["intake_ids"]) == 1
        [event] = events.wait_for("message_received")
        assert event["data"]["via"] == "http" and event["data"]["subject"] == "via webhook"
    status, body = ingest.request("POST", "/api/ingest/channels/stranger@example.com/messages",
                                  raw=customer_email().as_bytes())
    assert status == 404 and "not an inbox channel" in body["error"]["message"]
    status, body = ingest.request("POST", f"/api/ingest/channels/{CHANNEL}/messages", raw=b"   ")
    assert status == 400
    status, body = ingest.request("POST", f"/api/ingest/channels/{CHANNEL}/messages", raw=b"x" * 300_000)
    assert status == 413
    assert ingest.get("/api/ingest/messages/nope/raw")[0] == 404
    assert ingest.get(f"/api/ingest/messages/{uuid.uuid4()}/attachments/{'a' * 64}")[0] == 404


def test_hostile_and_malformed_mail_is_kept_and_quarantined_or_parsed_best_effort(ingest):
    bomb = b"Subject: bomb\r\nMessage-ID: <bomb@x>\r\n"
    for depth in range(60):
        bomb += f'Content-Type: multipart/mixed; boundary="b{depth}"\r\n\r\n--b{depth}\r\n'.encode()
    bomb += b"Content-Type: text/plain\r\n\r\nboom\r\n"
    garbage = b"\x00\xff\xfe not an email at all \x89PNG\r\n\r\n\x00\x01"
    with EventSubscriber(ingest.amqp_uri, [("ingest.events", "#")]) as events:
        for raw in (bomb, garbage):
            with smtplib.SMTP("127.0.0.1", ingest.smtp_port) as client:
                client.sendmail("x@example.com", [CHANNEL], raw)
        [quarantined] = events.wait_for("message_quarantined")
        assert "too complex" in quarantined["data"]["reason"]
        [garbage_event] = events.wait_for("message_received")
    status, info = ingest.get(f"/api/ingest/messages/{quarantined['data']['intake_id']}")
    assert info["status"] == "quarantined" and "too complex" in info["reason"]
    assert ingest.get(quarantined["data"]["raw_url"])[1] == bomb  # nothing lost
    assert garbage_event["data"]["message_id"].endswith("@generated.mailroom.invalid")

    # what an operator's dashboard shows for this: the intake counted by outcome, the quarantine now
    with urllib.request.urlopen(f"http://127.0.0.1:{ingest.ports['ingest']}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert 'mailroom_intake_messages_total{path="smtp",status="quarantined"} 1.0' in metrics
    assert 'mailroom_quarantined_messages_total{reason="too_complex"} 1.0' in metrics
    assert 'mailroom_quarantined_messages{service="ingest"} 1.0' in metrics
    assert 'mailroom_intake_backlog_messages{service="ingest"} 0.0' in metrics


def test_trusted_forward_is_attributed_to_the_original_sender(ingest):
    forward = EmailMessage()
    forward["Authentication-Results"] = (f"{OUR_MX}; dkim=pass header.d=mailroom.test; "
                                         "dmarc=pass header.from=mailroom.test")
    forward["From"] = "Agent <agent@mailroom.test>"
    forward["To"] = CHANNEL
    forward["Subject"] = "Fwd: Broken widget"
    forward["Message-ID"] = f"<{uuid.uuid4()}@mailroom.test>"
    forward.set_content("FYI\n\n---------- Forwarded message ---------\nFrom: Carol Customer <carol@customer.example>\n"
                        "Date: Mon, 3 Nov 2026 at 10:00\nSubject: Broken widget\nTo: <agent@mailroom.test>\n\n"
                        "My widget broke.\n")
    with EventSubscriber(ingest.amqp_uri, [("ingest.events", "message_received")]) as events:
        with smtplib.SMTP("127.0.0.1", ingest.smtp_port) as client:
            client.send_message(forward, to_addrs=[CHANNEL])
        [event] = events.wait_for("message_received")
    data = event["data"]
    assert data["attributed_to"]["email"] == "carol@customer.example"
    assert data["forward"]["forwarded_by"]["email"] == "agent@mailroom.test"
    assert data["forward"]["trusted"] is True and data["forward"]["detected_by"].startswith("text_block")
    assert data["forward"]["authentication"]["by"] == "authentication-results"


def test_imap_mailbox_is_polled_into_the_inbox_and_an_unreachable_one_reported(stack_factory, amqp_uri, dovecot,
                                                                                tmp_path):
    dead_port = free_port()
    mailboxes = tmp_path / "mailboxes.yaml"
    mailboxes.write_text(yaml.safe_dump([
        {"id": "team", "host": dovecot.host, "port": dovecot.port, "username": dovecot.user,
         "password_env": "TEAM_IMAP_PASSWORD", "ssl": False, "channel_address": CHANNEL},
        {"id": "dead", "host": "127.0.0.1", "port": dead_port, "username": "x", "password_env": "DEAD_IMAP_PASSWORD",
         "ssl": False, "channel_address": CHANNEL},
    ]))
    dovecot.deliver(customer_email(subject="polled from IMAP").as_bytes())
    dovecot.deliver(customer_email(subject="junk").as_bytes(), folder="Junk")
    # subscribe before ingest starts: its first poll may come at once
    with EventSubscriber(amqp_uri, [("ingest.events", "#")]) as events:
        start_ingest(stack_factory, {"INGEST_MAILBOXES_FILE": str(mailboxes), "INGEST_IMAP_POLL_SECONDS": "0.5",
                                     "TEAM_IMAP_PASSWORD": dovecot.password, "DEAD_IMAP_PASSWORD": "y"})
        [event] = events.wait_for("message_received", timeout=30)
        assert event["data"]["subject"] == "polled from IMAP" and event["data"]["via"] == "imap"
        [unreachable] = events.wait_for("mailbox_unreachable", timeout=30)
        assert unreachable["data"]["mailbox_id"] == "dead"
        time.sleep(2)  # several more failed polls: still one announcement, and the message only once
        assert len(events.of_type("mailbox_unreachable")) == 1
        assert len(events.of_type("message_received")) == 1
    assert all(b"\\Seen" not in flags for flags in dovecot.flags().values())  # not marked read


def test_a_members_forward_fetched_from_the_teams_own_mailbox_is_attributed_but_not_over_smtp(stack_factory,
                                                                                               amqp_uri, dovecot,
                                                                                               tmp_path):
    body = ("FYI\n\n---------- Forwarded message ---------\nFrom: Lee Customer <lee@customer.example>\n"
            "Date: Mon, 3 Nov 2026 at 10:00\nSubject: Late parcel\nTo: <agent@mailroom.test>\n\nWhere is it?\n")

    def member_forward(subject):
        message = EmailMessage()
        message["From"] = "Agent <agent@mailroom.test>"  # no Authentication-Results at all
        message["To"] = CHANNEL
        message["Subject"] = subject
        message["Message-ID"] = f"<{uuid.uuid4()}@mailroom.test>"
        message.set_content(body)
        return message

    mailboxes = tmp_path / "mailboxes.yaml"
    mailboxes.write_text(yaml.safe_dump([
        {"id": "team", "host": dovecot.host, "port": dovecot.port, "username": dovecot.user,
         "password_env": "TEAM_IMAP_PASSWORD", "ssl": False, "channel_address": CHANNEL}]))  # team_mailbox: default
    dovecot.deliver(member_forward("Fwd: Late parcel (IMAP)").as_bytes())
    with EventSubscriber(amqp_uri, [("ingest.events", "message_received")]) as events:
        stack = start_ingest(stack_factory, {"INGEST_MAILBOXES_FILE": str(mailboxes), "INGEST_IMAP_POLL_SECONDS": "0.5",
                                             "TEAM_IMAP_PASSWORD": dovecot.password})
        [fetched] = events.wait_for("message_received", timeout=30)
        with smtplib.SMTP("127.0.0.1", stack.smtp_port) as client:
            client.send_message(member_forward("Fwd: Late parcel (SMTP)"), to_addrs=[CHANNEL])
        smtp = next(e["data"] for e in events.wait_for("message_received", count=2) if e["data"]["via"] == "smtp")
    fetched = fetched["data"]
    assert fetched["via"] == "imap" and fetched["attributed_to"]["email"] == "lee@customer.example"
    assert fetched["forward"]["authentication"]["by"] == "imap" and fetched["forward"]["trusted"] is True
    # the same From over SMTP, with nothing to authenticate it: it stays with its sender
    assert smtp["attributed_to"]["email"] == "agent@mailroom.test" and smtp["forward"]["trusted"] is False
    assert smtp["forward"]["authentication"] == {
        "authenticated": False, "by": None, "authserv_id": None, "detail": None,
        "reason": "no Authentication-Results from a trusted authserv-id"}


def test_a_forward_from_another_of_our_inboxes_is_not_a_loop_but_our_own_mail_coming_back_is(ingest):
    publish_event(ingest.amqp_uri, "inbox_updated", "inbox-2", {
        "inbox_id": "inbox-2", "name": "Billing", "channel_addresses": ["billing@mailroom.test"],
        "member_emails": []})
    ingest.eventually(lambda: rcpt_code(ingest, "billing@mailroom.test") == 250)
    body = ("Billing, this one is yours.\n\n---------- Forwarded message ---------\n"
            "From: Kim Customer <kim@customer.example>\nDate: Wed, 5 Nov 2026 at 09:00\n"
            "Subject: Invoice 77\nTo: <support@mailroom.test>\n\nInvoice 77 is wrong.\n")

    def from_support(to, subject):
        message = EmailMessage()
        message["Authentication-Results"] = f"{OUR_MX}; dmarc=pass header.from=mailroom.test"  # out and back in
        message["From"] = f"Support <{CHANNEL}>"
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = f"<{uuid.uuid4()}@mailroom.local>"
        message["X-Mailroom-Origin"] = "mailroom"  # what outbound puts on everything it sends
        message.set_content(body)
        return message

    with EventSubscriber(ingest.amqp_uri, [("ingest.events", "message_received")]) as events:
        with smtplib.SMTP("127.0.0.1", ingest.smtp_port) as client:
            client.send_message(from_support("billing@mailroom.test", "Fwd: Invoice 77"))
            client.send_message(from_support(CHANNEL, "Fwd: Invoice 77 (back to ourselves)"))
        received = {e["data"]["channel_address"]: e["data"] for e in events.wait_for("message_received", count=2)}
    to_billing, to_support = received["billing@mailroom.test"], received[CHANNEL]
    assert to_billing["flags"]["loop"] is False
    assert any(r.startswith("internal:from another inbox") for r in to_billing["flags"]["reasons"])
    assert to_billing["attributed_to"]["email"] == "kim@customer.example"  # our inbox forwards as a member
    assert to_billing["forward"]["trusted"] is True
    assert to_support["flags"]["loop"] is True  # the same inbox: our own mail coming back


def test_mail_stored_by_the_smtp_listener_is_picked_up_at_once_not_at_the_next_poll(stack_factory):
    """The SMTP listener is another process: it NOTIFYs ingest through PostgreSQL. With the poll
    set to 10 minutes, only the notification can make the message arrive within the wait."""
    stack = start_ingest(stack_factory, extra_env={"INGEST_INTAKE_POLL_SECONDS": "600"})
    with EventSubscriber(stack.amqp_uri, [("ingest.events", "message_received")]) as events:
        for n in range(2):  # the second shows the listener keeps listening
            message = customer_email(subject=f"Notified {n}")
            with smtplib.SMTP("127.0.0.1", stack.smtp_port) as client:
                client.send_message(message)
            events.wait_for("message_received", lambda e, n=n: e["data"]["subject"] == f"Notified {n}", timeout=30)
