"""Across services: a message's raw bytes, attachments and cid: images are served by ingest only
to who may view the message's inbox (via the download token in the URLs conversations gives);
remote images load on request; contacts answer only with a token."""

import uuid
from email.message import EmailMessage

import pytest

from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import NO_AUTH, auth

pytestmark = pytest.mark.integration

MEMBER = auth("agent-a")
OUTSIDER = auth("agent-x")
ACCOUNT_ADMIN = auth("acc-admin", roles=["account_access"])
PIXEL = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")


def mail_with_images() -> bytes:
    message = EmailMessage()
    message["From"] = "Ada <ada@example.com>"
    message["To"] = "billing@mailroom.test"
    message["Subject"] = "Invoice"
    message["Message-ID"] = f"<{uuid.uuid4()}@example.com>"
    message.set_content("see the picture")
    message.add_alternative('<p>Logo <img src="cid:logo@x"> tracker <img src="https://tracker.example/p.gif">'
                            '<img src=x onerror="alert(1)"><script>alert(2)</script></p>', subtype="html")
    message.get_payload()[1].add_related(PIXEL, maintype="image", subtype="png", cid="<logo@x>",
                                         filename="logo.png")
    return message.as_bytes()


def test_downloads_images_and_other_services_enforce_access(stack_factory):
    stack = stack_factory([INGEST, CONVERSATIONS, CONTACTS], extra_env={"CONVERSATIONS_INBOXES_FILE": ""})
    status, inbox = stack.post("/api/inboxes", {
        "name": "Billing", "channels": [{"address": "billing@mailroom.test"}],
        "members": [{"user_id": "agent-a", "email": "agent-a@mailroom.test"}], "access": {"visibility": "specific"}})
    assert status == 201
    stack.eventually(lambda: stack.get("/health/ingest")[1].get("channels") == 1)

    # posting raw mail: super admins (the tests' default caller) or the `intake` role only
    raw = mail_with_images()
    path = "/api/ingest/channels/billing@mailroom.test/messages"
    assert stack.request("POST", path, raw=raw, headers=NO_AUTH)[0] == 401
    assert stack.request("POST", path, raw=raw, headers=MEMBER)[0] == 403
    assert stack.request("POST", path, raw=raw, headers=ACCOUNT_ADMIN)[0] == 403
    with EventSubscriber(stack.amqp_uri, [("conversations.events", "message_added")]) as events:
        status, accepted = stack.request("POST", path, raw=raw, headers=auth("webhook", roles=["intake"]))
        assert status == 202, accepted
        [added] = events.wait_for("message_added", timeout=30)
    message_id = added["data"]["message_id"]

    status, message = stack.get(f"/api/messages/{message_id}", headers=MEMBER)
    assert status == 200
    [logo] = message["attachments"]
    assert "?access=" in logo["url"] and f'src="{logo["url"]}"' in message["html"]  # the cid: image
    assert "tracker.example" not in message["html"] and message["remote_images_blocked"] == 1
    assert "onerror" not in message["html"] and "<script" not in message["html"]

    # the signed URLs work without a bearer header (an <img> sends none) …
    status, body = stack.get(logo["url"], headers=NO_AUTH)
    assert status == 200 and body == PIXEL
    status, body = stack.get(message["full_message_url"], headers=NO_AUTH)
    assert status == 200 and b"Subject: Invoice" in body
    # … and only for their message; bare URLs need a token of someone who views every inbox
    bare = logo["url"].split("?")[0]
    assert stack.get(bare, headers=NO_AUTH)[0] == 401
    assert stack.get(bare, headers=OUTSIDER)[0] == 404
    assert stack.get(bare, headers=MEMBER)[0] == 404  # members use the links conversations gives them
    assert stack.get(bare, headers=ACCOUNT_ADMIN)[0] == 200
    intake_id = added["data"]["intake_id"]
    other = str(uuid.uuid4())
    token = logo["url"].split("access=")[1]
    assert stack.get(f"/api/ingest/messages/{other}/raw?access={token}", headers=NO_AUTH)[0] == 401
    assert stack.get(f"/api/ingest/messages/{intake_id}/raw?access=forged", headers=NO_AUTH)[0] == 401
    assert stack.get(f"/api/ingest/messages/{intake_id}", headers=OUTSIDER)[0] == 404
    # who may not view the inbox gets no link at all
    assert stack.get(f"/api/messages/{message_id}", headers=OUTSIDER)[0] == 404

    # remote images on request: re-sanitised from the raw message by ingest, still sanitised
    status, loaded = stack.get(f"/api/messages/{message_id}?images=load", headers=MEMBER)
    assert status == 200, loaded
    assert 'src="https://tracker.example/p.gif"' in loaded["html"] and loaded["remote_images_loaded"] is True
    assert "onerror" not in loaded["html"] and "<script" not in loaded["html"]
    assert f'src="{loaded["attachments"][0]["url"]}"' in loaded["html"]
    assert stack.get(f"/api/messages/{message_id}?images=load", headers=OUTSIDER)[0] == 404
    assert stack.get(f"/api/messages/{message_id}?images=all", headers=MEMBER)[0] == 400

    # contacts: any signed-in user of the account; nobody without a token
    stack.eventually(lambda: stack.get("/api/contacts?email=ada@example.com")[1]["items"])
    assert stack.get("/api/contacts?email=ada@example.com", headers=NO_AUTH)[0] == 401
    status, found = stack.get("/api/contacts?email=ada@example.com", headers=OUTSIDER)
    assert status == 200
    contact_id = found["items"][0]["id"]
    for contact_path in (f"/api/contacts/{contact_id}", f"/api/contacts/{contact_id}/timeline", "/api/contacts?q=ada"):
        assert stack.get(contact_path, headers=NO_AUTH)[0] == 401
    assert stack.post("/api/contacts", {"emails": ["new@example.com"]}, headers=NO_AUTH)[0] == 401
