"""Across services: an inbound attachment on a contact's timeline is downloadable by a member of
the inbox it came to — contacts signs its link for the caller (ingest's download token, as
conversations signs a message's links) — and the timeline shows neither the entry nor a link to
who may not view that inbox. Real processes: ingest, contacts, conversations; real RabbitMQ and
PostgreSQL."""

import uuid
from email.message import EmailMessage

import pytest

from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST
from mailroom_testing.tokens import NO_AUTH, auth

pytestmark = pytest.mark.integration

BILLING = "billing@mailroom.test"
MEMBER = auth("agent-a")
OUTSIDER = auth("agent-x")
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 8


def mail_with_attachment() -> bytes:
    message = EmailMessage()
    message["From"] = "Ada Customer <ada@example.com>"
    message["To"] = BILLING
    message["Subject"] = "Invoice 7"
    message["Message-ID"] = f"<{uuid.uuid4()}@example.com>"
    message.set_content("The invoice is attached.")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice-7.pdf")
    return message.as_bytes()


def timeline_of(stack, email, headers):
    found = stack.get(f"/api/contacts?email={email}", headers=headers)[1]["items"]
    if not found:
        return None
    status, page = stack.get(f"/api/contacts/{found[0]['id']}/timeline", headers=headers)
    assert status == 200, page
    return page["items"]


def test_a_members_timeline_attachment_link_downloads_from_ingest(stack_factory):
    stack = stack_factory([INGEST, CONTACTS, CONVERSATIONS], extra_env={"CONVERSATIONS_INBOXES_FILE": ""})
    status, inbox = stack.post("/api/inboxes", {
        "name": "Billing", "channels": [{"address": BILLING}],
        "members": [{"user_id": "agent-a", "email": "agent-a@mailroom.test"}], "access": {"visibility": "specific"}})
    assert status == 201, inbox
    stack.eventually(lambda: stack.get("/health/ingest")[1].get("channels") == 1, timeout=30)
    status, accepted = stack.post(f"/api/ingest/channels/{BILLING}/messages", raw=mail_with_attachment())
    assert status == 202, accepted

    [entry] = stack.eventually(lambda: timeline_of(stack, "ada@example.com", MEMBER), timeout=30)
    [attachment] = entry["attachments"]
    assert attachment["filename"] == "invoice-7.pdf" and "?access=" in attachment["url"]
    # the link works by itself (a browser's download or <img> sends no bearer header) …
    status, body = stack.get(attachment["url"], headers=NO_AUTH)
    assert status == 200 and body == PDF
    # … the bare URL does not (ingest keeps no access settings: members need the signed link)
    bare = attachment["url"].split("?")[0]
    assert stack.get(bare, headers=MEMBER)[0] == 404
    # the token is this member's for this message only
    token = attachment["url"].split("access=")[1]
    assert stack.get(f"/api/ingest/messages/{uuid.uuid4()}/raw?access={token}", headers=NO_AUTH)[0] == 401

    # who may not view the inbox sees no entry, hence no link
    assert timeline_of(stack, "ada@example.com", OUTSIDER) == []
