"""Only an authenticated forwarder moves mail, as a team sees it: a forward whose From is a
member's address but that nothing authenticates stays with whoever sent it (the original sender
is only recorded on the message, with the reason), however its headers claim otherwise; the same
forward with the organisation's MX saying `dmarc=pass` lands on the customer's record. Real
processes: ingest (+ SMTP listener), contacts, conversations; real RabbitMQ, PostgreSQL, SMTP."""

import email.policy
import smtplib
import uuid
from email.message import EmailMessage

import pytest

from mailroom_testing.subscriber import EventSubscriber

pytestmark = pytest.mark.integration

INBOX_ADDRESS = "support@mailroom.test"
MEMBER = "agent@mailroom.test"
OUR_MX = "mx.mailroom.test"


def forward_of(customer: str, *authentication_results: str) -> EmailMessage:
    """A forward whose From is the member's address; Authentication-Results topmost first."""
    message = EmailMessage()
    for value in authentication_results:
        message["Authentication-Results"] = value
    message["From"] = f"Agent <{MEMBER}>"
    message["To"] = INBOX_ADDRESS
    message["Subject"] = f"Fwd: Refund for {customer}"
    message["Message-ID"] = f"<{uuid.uuid4()}@mailroom.test>"
    message.set_content(f"Please handle.\n\n---------- Forwarded message ---------\nFrom: Customer <{customer}>\n"
                        "Date: Mon, 3 Nov 2026 at 09:12\nSubject: Refund\nTo: <agent@mailroom.test>\n\n"
                        "I want my money back.\n")
    return message


def send(stack, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as client:
        client.sendmail(message["From"], [INBOX_ADDRESS], message.as_bytes(policy=email.policy.SMTP))


def contact(stack, address):
    items = stack.get(f"/api/contacts?email={address}")[1]["items"]
    return items[0] if items else None


def message_with_subject(stack, subject):
    status, body = stack.get(f"/api/inboxes/{stack.inbox_id}/conversations?view=open")
    assert status == 200, body
    for conversation in body["items"]:
        if conversation["subject"] == subject:
            return stack.get(f"/api/conversations/{conversation['id']}")[1]["messages"][0]
    return None


def test_a_spoofed_member_from_does_not_move_mail_and_a_trusted_dmarc_pass_does(mailroom):
    # 1. nothing authenticates the member's From: anyone could have written it
    spoofed = forward_of("dana@customer.example")
    # 2. a header claiming a pass, but from an authserv-id that is not ours, proves nothing either
    forged = forward_of("erin@customer.example", "mx.attacker.example; dmarc=pass header.from=mailroom.test")
    # 3. our MX says the From passed DMARC: the forward belongs to the customer
    genuine = forward_of("finn@customer.example",
                         f"{OUR_MX}; spf=pass smtp.mailfrom=mailroom.test; dkim=pass header.d=mailroom.test; "
                         "dmarc=pass header.from=mailroom.test")
    with EventSubscriber(mailroom.amqp_uri, [("ingest.events", "message_received")]) as events:
        for message in (spoofed, forged, genuine):
            send(mailroom, message)
        received = {e["data"]["subject"]: e["data"] for e in events.wait_for("message_received", count=3)}

    finn = mailroom.eventually(lambda: contact(mailroom, "finn@customer.example"))
    [entry] = mailroom.eventually(lambda: mailroom.get(f"/api/contacts/{finn['id']}/timeline")[1]["items"])
    assert entry["forwarded_by"]["email"] == MEMBER and entry["subject"] == genuine["Subject"]
    moved = mailroom.eventually(lambda: message_with_subject(mailroom, genuine["Subject"]))
    assert moved["forward"]["trusted"] is True
    # message_received says which rule decided, for every consumer
    decided = received[genuine["Subject"]]["forward"]
    assert decided["authenticated"] is True and decided["authentication"]["by"] == "authentication-results"
    assert decided["authentication"]["authserv_id"] == OUR_MX
    assert decided["authentication"]["detail"] == "dmarc=pass header.from=mailroom.test"

    for message, customer in ((spoofed, "dana@customer.example"), (forged, "erin@customer.example")):
        kept = mailroom.eventually(lambda m=message: message_with_subject(mailroom, m["Subject"]))
        # the original sender is recorded on the message, and it was not moved
        assert kept["forward"]["original_sender"]["email"] == customer and kept["forward"]["trusted"] is False
        data = received[message["Subject"]]
        assert data["attributed_to"]["email"] == MEMBER and data["forward"]["authenticated"] is False
        assert data["forward"]["authentication"]["reason"] == "no Authentication-Results from a trusted authserv-id"
        assert contact(mailroom, customer) is None  # nothing was filed on the customer's record
