"""End to end, as a team would see it: mail into the SMTP listener becomes a conversation with a
contact and a timeline, other systems receive the events, and nothing is lost when a service
is down. Real processes: ingest (+ SMTP listener), contacts, conversations; real RabbitMQ,
PostgreSQL and SMTP."""

import email.policy
import subprocess
import sys
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailroom_testing.subscriber import EventSubscriber

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
INBOX_ADDRESS = "support@mailroom.test"
MEMBER = "agent@mailroom.test"


def send(stack, message: EmailMessage, to=(INBOX_ADDRESS,)) -> None:
    import smtplib

    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30) as client:
        client.sendmail(message["From"], list(to), message.as_bytes(policy=email.policy.SMTP))


def email_from(sender, subject, body="Hello", **headers):
    message = EmailMessage()
    message["From"] = sender
    message["To"] = INBOX_ADDRESS
    message["Subject"] = subject
    message["Message-ID"] = headers.pop("message_id", f"<{uuid.uuid4()}@customer.example>")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def conversations(stack, view="open"):
    status, body = stack.get(f"/api/inboxes/{stack.inbox_id}/conversations?view={view}")
    assert status == 200, body
    return body["items"]


def contact(stack, email):
    items = stack.get(f"/api/contacts?email={email}")[1]["items"]
    return items[0] if items else None


def timeline(stack, contact_id):
    return stack.get(f"/api/contacts/{contact_id}/timeline")[1]["items"]


def test_an_email_becomes_a_conversation_a_contact_and_a_timeline_entry(mailroom):
    subscriber = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "subscriber.py"), "conversations.events", "conversation_created"],
        env={"AMQP_URI": mailroom.amqp_uri, "SUBSCRIBER_QUEUE": "example.e2e", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE, text=True)
    try:
        assert "waiting for" in subscriber.stdout.readline()
        send(mailroom, email_from("Ada Customer <ada@customer.example>", "My order #42 is late",
                                  "It was due last week."))
        [conversation] = mailroom.eventually(lambda: conversations(mailroom))
        assert conversation["subject"] == "My order #42 is late"
        seen_by_other_system = subscriber.stdout.readline()
        assert "mailroom.conversation_created.v1" in seen_by_other_system
        assert conversation["id"] in seen_by_other_system
    finally:
        subscriber.terminate()
        subscriber.wait(10)

    ada = mailroom.eventually(lambda: contact(mailroom, "ada@customer.example"))
    assert ada["name"] == "Ada Customer"
    [entry] = mailroom.eventually(lambda: [e for e in timeline(mailroom, ada["id"]) if e["conversation_id"]])
    assert entry["conversation_id"] == conversation["id"] and entry["direction"] == "in"
    assert entry["subject"] == "My order #42 is late" and entry["snippet"] == "It was due last week."
    status, detail = mailroom.get(f"/api/conversations/{conversation['id']}")
    assert status == 200 and [m["direction"] for m in detail["messages"]] == ["in"]
    full = mailroom.get(detail["messages"][0]["full_message_url"])
    assert full[0] == 200 and b"It was due last week." in full[1]


def test_a_reply_threads_into_the_conversation_and_reopens_it(mailroom):
    first = email_from("Bo <bo@customer.example>", "Invoice question")
    send(mailroom, first)
    [conversation] = mailroom.eventually(lambda: conversations(mailroom))
    assert mailroom.post(f"/api/conversations/{conversation['id']}/close")[0] == 200
    reply = email_from("Bo <bo@customer.example>", "Re: Invoice question", "One more thing",
                       In_Reply_To=first["Message-ID"], References=first["Message-ID"])
    send(mailroom, reply)
    [reopened] = mailroom.eventually(lambda: conversations(mailroom))
    assert reopened["id"] == conversation["id"] and reopened["message_count"] == 2
    # same subject from another customer is never threaded into Bo's conversation
    send(mailroom, email_from("Cy <cy@customer.example>", "Re: Invoice question"))
    mailroom.eventually(lambda: len(conversations(mailroom)) == 2)


def test_a_teammates_forward_belongs_to_the_customer_and_a_strangers_does_not(mailroom):
    body = ("Can you help this customer?\n\n---------- Forwarded message ---------\n"
            "From: Dana Customer <dana@customer.example>\nDate: Mon, 3 Nov 2026 at 09:12\n"
            "Subject: Broken widget\nTo: <agent@mailroom.test>\n\nThe widget broke after one day.\n")
    # the organisation's MX (a trusted authserv-id) says the member's From passed DMARC
    send(mailroom, email_from(f"Agent <{MEMBER}>", "Fwd: Broken widget", body,
                              Authentication_Results="mx.mailroom.test; dmarc=pass header.from=mailroom.test"))
    dana = mailroom.eventually(lambda: contact(mailroom, "dana@customer.example"))
    assert contact(mailroom, MEMBER) is None  # the forwarder is not made a contact of the inbox
    [entry] = mailroom.eventually(lambda: timeline(mailroom, dana["id"]))
    assert entry["forwarded_by"]["email"] == MEMBER
    [conversation] = conversations(mailroom)
    status, detail = mailroom.get(f"/api/conversations/{conversation['id']}")
    message = detail["messages"][0]
    assert message["forward"]["original_sender"]["email"] == "dana@customer.example"
    assert message["forward"]["forwarded_by"]["email"] == MEMBER

    send(mailroom, email_from("Mallory <mallory@elsewhere.example>", "Fwd: Broken widget", body))
    mallory = mailroom.eventually(lambda: contact(mailroom, "mallory@elsewhere.example"))
    [untrusted] = mailroom.eventually(lambda: timeline(mailroom, mallory["id"]))
    assert untrusted["forwarded_by"] is None
    assert len(timeline(mailroom, dana["id"])) == 1  # a stranger cannot put mail on Dana's record


def test_mail_received_while_services_are_down_arrives_when_they_are_back(mailroom):
    mailroom.stop_process("conversations")
    mailroom.stop_process("ingest")
    subjects = [f"sent during the outage #{i}" for i in range(5)]
    for subject in subjects:  # the SMTP listener still accepts: bytes are stored before 250
        send(mailroom, email_from("Eve <eve@customer.example>", subject))
    time.sleep(0.5)
    mailroom.restart_process("ingest")
    mailroom.restart_process("conversations")
    listed = mailroom.eventually(lambda: {c["subject"] for c in conversations(mailroom)} >= set(subjects) and
                                 conversations(mailroom), timeout=30)
    assert sorted(c["subject"] for c in listed) == sorted(subjects)  # each exactly once
    eve = mailroom.eventually(lambda: contact(mailroom, "eve@customer.example"))
    mailroom.eventually(lambda: len(timeline(mailroom, eve["id"])) == 5)


def test_every_step_publishes_its_event_in_order(mailroom):
    with EventSubscriber(mailroom.amqp_uri, [("ingest.events", "#"), ("contacts.events", "#"),
                                             ("conversations.events", "#")]) as events:
        send(mailroom, email_from("Fay <fay@customer.example>", "Hello"))
        received = events.wait_for("message_received")[0]
        created = events.wait_for("contact_created")[0]
        conversation = events.wait_for("conversation_created")[0]
        added = events.wait_for("message_added")[0]
        events.wait_for("timeline_entry_added")
    assert created["data"]["emails"] == ["fay@customer.example"]
    assert added["data"]["intake_id"] == received["data"]["intake_id"]
    assert added["data"]["conversation_id"] == conversation["data"]["conversation_id"]
    assert all(e["specversion"] == "1.0" and e["source"].startswith("mailroom/") for e in events.received)
    # AMQP properties mirror the envelope (subscribers may filter on them) and every event is persistent
    assert all(e["_amqp"] == {"message_id": e["id"], "type": e["type"], "app_id": e["source"],
                              "content_type": "application/json", "delivery_mode": 2} for e in events.received)


def test_spam_stays_out_of_the_inbox_until_a_member_says_it_is_not_spam(mailroom):
    from mailroom_testing.tokens import auth

    member = auth("agent-1", email=MEMBER)
    send(mailroom, email_from("Gil <gil@customer.example>", "Totally legit offer", X_Spam_Flag="YES"))
    [spam] = mailroom.eventually(lambda: conversations(mailroom, "spam"))
    assert conversations(mailroom, "open") == []
    assert contact(mailroom, "gil@customer.example") is None  # held back while it is spam

    status, body = mailroom.post(f"/api/conversations/{spam['id']}/not-spam", headers=member)
    assert status == 200, body
    [released] = mailroom.eventually(lambda: conversations(mailroom, "open"))
    assert released["id"] == spam["id"]
    gil = mailroom.eventually(lambda: contact(mailroom, "gil@customer.example"))
    [entry] = mailroom.eventually(lambda: timeline(mailroom, gil["id"]))
    assert entry["subject"] == "Totally legit offer" and entry["conversation_id"] == spam["id"]


def test_a_teammate_corrects_a_wrong_attribution_and_the_change_is_recorded(mailroom):
    from mailroom_testing.tokens import NO_AUTH, auth

    body = ("---------- Forwarded message ---------\nFrom: Hana Customer <hana@customer.example>\n"
            "Date: Tue, 4 Nov 2026 at 08:00\nSubject: Refund\nTo: <ivan@partner.example>\n\nPlease refund me.\n")
    with EventSubscriber(mailroom.amqp_uri, [("conversations.events", "message_attribution_corrected")]) as events:
        # an untrusted forwarder: the message stays with him, the original sender is only recorded
        send(mailroom, email_from("Ivan Partner <ivan@partner.example>", "Fwd: Refund", body))
        ivan = mailroom.eventually(lambda: contact(mailroom, "ivan@partner.example"))
        [conversation] = mailroom.eventually(lambda: conversations(mailroom))
        [message] = mailroom.get(f"/api/conversations/{conversation['id']}")[1]["messages"]
        assert message["forward"]["original_sender"]["email"] == "hana@customer.example"

        path = f"/api/conversations/{conversation['id']}/messages/{message['id']}/attribution"
        correction = {"email": "Hana@Customer.example", "name": "Hana Customer"}
        assert mailroom.request("PUT", path, correction, headers=NO_AUTH)[0] == 401
        assert mailroom.request("PUT", path, {"email": "not an address"}, headers=auth("agent-1"))[0] == 400
        status, result = mailroom.request("PUT", path, correction, headers=auth("agent-1", email=MEMBER))
        assert status == 200 and result["changed"] is True, result
        [event] = events.wait_for("message_attribution_corrected")
    assert event["data"]["previous"]["email"] == "ivan@partner.example"
    assert event["data"]["attributed_to"] == {"name": "Hana Customer", "email": "hana@customer.example"}
    assert event["data"]["corrected_by"] == "agent-1"
    hana = mailroom.eventually(lambda: contact(mailroom, "hana@customer.example"))
    [entry] = mailroom.eventually(lambda: timeline(mailroom, hana["id"]))
    assert entry["subject"] == "Fwd: Refund"
    mailroom.eventually(lambda: timeline(mailroom, ivan["id"]) == [])
    [listed] = conversations(mailroom)
    assert listed["contact"]["email"] == "hana@customer.example"
