"""The contacts service as it runs in production: a real process, real RabbitMQ and PostgreSQL."""

import concurrent.futures
import uuid

import pytest

from mailroom_testing.publishing import publish_event, publish_raw, queue_depth
from mailroom_testing.specs import CONTACTS
from mailroom_testing.subscriber import EventSubscriber

pytestmark = pytest.mark.integration


def message_received(sender_email, *, name="Ada Customer", message_id=None, spam=False, forward=None,
                     attributed_to=None, channel="support@mailroom.test", attachments=()):
    return {
        "intake_id": str(uuid.uuid4()), "channel_address": channel, "via": "smtp",
        "message_id": message_id or f"{uuid.uuid4()}@example.com", "subject": "Where is my order?",
        "date": None, "sender": {"name": name, "email": sender_email},
        "attributed_to": attributed_to or {"name": name, "email": sender_email},
        "to": [{"name": None, "email": channel}], "text": "Hello,\n\n  my order   #42 has not arrived.",
        "html": None, "size": 1234, "raw_url": "/api/ingest/messages/x/raw",
        "attachments": list(attachments), "received_at": "2026-11-25T10:00:00+00:00",
        "flags": {"auto_submitted": False, "bounce": False, "spam": spam, "loop": False, "reasons": []},
        "forward": forward,
    }


@pytest.fixture
def contacts(stack_factory):
    return stack_factory([CONTACTS])


def find_by_email(stack, email):
    status, body = stack.get(f"/api/contacts?email={email}")
    assert status == 200, body
    return body["items"][0] if body["items"] else None


def test_unknown_sender_becomes_a_contact_with_the_email_on_its_timeline(contacts):
    attachment = {"filename": "invoice.pdf", "content_type": "application/pdf", "size": 10, "sha256": "ab" * 32,
                  "disposition": "attachment", "content_id": None, "url": "/api/ingest/attachments/1"}
    with EventSubscriber(contacts.amqp_uri, [("contacts.events", "#")]) as events:
        data = message_received("Ada@Example.COM", attachments=[attachment])
        publish_event(contacts.amqp_uri, "message_received", data["intake_id"], data)
        created = events.wait_for("contact_created")[0]
        events.wait_for("timeline_entry_added")

    contact = contacts.eventually(lambda: find_by_email(contacts, "ada@example.com"))
    assert contact["emails"] == ["ada@example.com"]
    assert contact["name"] == "Ada Customer"
    assert created["data"]["contact_id"] == contact["id"]
    assert created["source"] == "mailroom/contacts" and created["type"] == "mailroom.contact_created.v1"

    status, timeline = contacts.get(f"/api/contacts/{contact['id']}/timeline")
    assert status == 200
    [entry] = timeline["items"]
    assert entry["direction"] == "in"
    assert entry["subject"] == "Where is my order?"
    assert entry["snippet"] == "Hello, my order #42 has not arrived."
    assert entry["attachments"][0]["filename"] == "invoice.pdf"


def test_redelivered_event_changes_nothing(contacts):
    data = message_received("twice@example.com")
    event_id = str(uuid.uuid4())
    with EventSubscriber(contacts.amqp_uri, [("contacts.events", "contact_created")]) as events:
        publish_event(contacts.amqp_uri, "message_received", data["intake_id"], data, event_id=event_id)
        publish_event(contacts.amqp_uri, "message_received", data["intake_id"], data, event_id=event_id)
        events.wait_for("contact_created")
        contact = contacts.eventually(lambda: find_by_email(contacts, "twice@example.com"))
        # a later, different message from the same sender proves both copies were consumed
        later = message_received("twice@example.com")
        publish_event(contacts.amqp_uri, "message_received", later["intake_id"], later)
        contacts.eventually(lambda: len(contacts.get(f"/api/contacts/{contact['id']}/timeline")[1]["items"]) == 2)
        assert len(events.of_type("contact_created")) == 1


def test_simultaneous_messages_from_a_new_sender_make_one_contact(contacts):
    messages = [message_received("race@example.com") for _ in range(12)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda d: publish_event(contacts.amqp_uri, "message_received", d["intake_id"], d), messages))
    contact = contacts.eventually(lambda: find_by_email(contacts, "race@example.com"))
    contacts.eventually(lambda: len(contacts.get(f"/api/contacts/{contact['id']}/timeline")[1]["items"]) == 12)
    status, search = contacts.get("/api/contacts?q=race@")
    assert [c["id"] for c in search["items"]] == [contact["id"]]


def test_spam_own_addresses_and_robots_get_no_contact(contacts):
    publish_event(contacts.amqp_uri, "inbox_updated", "inbox-1", {
        "inbox_id": "inbox-1", "name": "Support", "channel_addresses": ["sales@mailroom.test"],
        "member_emails": []})
    for data in (message_received("spammer@example.com", spam=True),
                 message_received("MAILER-DAEMON@example.com"),
                 message_received("no-reply@shop.example")):
        publish_event(contacts.amqp_uri, "message_received", data["intake_id"], data)
    contacts.eventually(lambda: queue_depth(
        contacts.amqp_uri, "evt-conversations-inbox_updated--contacts.handle_inbox_updated") == 0)
    own = message_received("sales@mailroom.test")
    marker = message_received("marker@example.com")
    for data in (own, marker):
        publish_event(contacts.amqp_uri, "message_received", data["intake_id"], data)
    contacts.eventually(lambda: find_by_email(contacts, "marker@example.com"))  # everything before is consumed
    for email in ("spammer@example.com", "mailer-daemon@example.com", "no-reply@shop.example", "sales@mailroom.test"):
        assert find_by_email(contacts, email) is None, email


def test_trusted_forward_is_logged_on_the_original_sender_with_the_forwarder_shown(contacts):
    forward = {"original_sender": {"name": "Carol", "email": "carol@customer.example"},
               "original_subject": "Broken widget", "original_date": "Mon, 3 Nov 2026",
               "detected_by": "text_block:gmail", "forwarded_by": {"name": "Tom", "email": "tom@mailroom.test"},
               "trusted": True}
    data = message_received("tom@mailroom.test", name="Tom", forward=forward,
                            attributed_to={"name": "Carol", "email": "carol@customer.example"})
    publish_event(contacts.amqp_uri, "message_received", data["intake_id"], data)
    carol = contacts.eventually(lambda: find_by_email(contacts, "carol@customer.example"))
    [entry] = contacts.get(f"/api/contacts/{carol['id']}/timeline")[1]["items"]
    assert entry["forwarded_by"] == {"name": "Tom", "email": "tom@mailroom.test"}
    assert find_by_email(contacts, "tom@mailroom.test") is None


def test_conversation_id_reaches_the_timeline_whatever_the_event_order(contacts):
    data = message_received("order@example.com")
    conversation_id = str(uuid.uuid4())
    publish_event(contacts.amqp_uri, "message_added", conversation_id, {
        "conversation_id": conversation_id, "inbox_id": "i", "message_id": "m", "rfc_message_id": data["message_id"],
        "direction": "in", "subject": "s", "intake_id": data["intake_id"]})
    publish_event(contacts.amqp_uri, "message_received", data["intake_id"], data)
    contact = contacts.eventually(lambda: find_by_email(contacts, "order@example.com"))
    entries = contacts.eventually(lambda: contacts.get(f"/api/contacts/{contact['id']}/timeline")[1]["items"])
    assert entries[0]["conversation_id"] == conversation_id


def test_malformed_event_is_dead_lettered_and_does_not_block_the_queue(contacts):
    queue = "evt-ingest-message_received--contacts.handle_message_received"
    publish_raw(contacts.amqp_uri, "ingest.events", "message_received", b"{not json")
    publish_raw(contacts.amqp_uri, "ingest.events", "message_received", b'{"id": "1", "data": {"subject": 1}}')
    good = message_received("after-poison@example.com")
    publish_event(contacts.amqp_uri, "message_received", good["intake_id"], good)
    contacts.eventually(lambda: find_by_email(contacts, "after-poison@example.com"))
    contacts.eventually(lambda: queue_depth(contacts.amqp_uri, queue + ".dlq") == 2)


def test_http_api_answers_clearly_on_bad_input(contacts):
    assert contacts.get("/api/contacts/does-not-exist")[0] == 404
    status, body = contacts.get("/api/contacts?email=not-an-address")
    assert status == 400 and "not a valid email address" in body["error"]["message"]
    status, body = contacts.post("/api/contacts", {"emails": []})
    assert status == 400 and "emails" in body["error"]["details"]
    status, body = contacts.request("POST", "/api/contacts", raw=b"\xff\xfe not json")
    assert status == 400
    status, created = contacts.post("/api/contacts", {"name": "Bea", "emails": ["bea@example.com", "b@example.com"]})
    assert status == 201 and created["emails"] == ["bea@example.com", "b@example.com"]
    status, body = contacts.post("/api/contacts", {"emails": ["B@Example.com"]})
    assert status == 409
    assert contacts.get("/api/contacts?email=B@EXAMPLE.COM")[1]["items"][0]["id"] == created["id"]


def test_marking_spam_as_not_spam_creates_the_held_back_contact_with_its_timeline(contacts):
    spam = message_received("real.customer@example.com", name="Real Customer", spam=True)
    publish_event(contacts.amqp_uri, "message_received", spam["intake_id"], spam)
    marker = message_received("marker2@example.com")
    publish_event(contacts.amqp_uri, "message_received", marker["intake_id"], marker)
    contacts.eventually(lambda: find_by_email(contacts, "marker2@example.com"))
    assert find_by_email(contacts, "real.customer@example.com") is None  # held back while it is spam

    publish_event(contacts.amqp_uri, "conversation_spam_marked", "c1", {
        "conversation_id": "c1", "inbox_id": "i1", "spam": False, "marked_by": "agent-1",
        "contact_email": "real.customer@example.com", "contact_name": "Real Customer",
        "intake_ids": [spam["intake_id"]]})
    released = contacts.eventually(lambda: find_by_email(contacts, "real.customer@example.com"))
    assert released["name"] == "Real Customer"
    [entry] = contacts.eventually(lambda: contacts.get(f"/api/contacts/{released['id']}/timeline")[1]["items"])
    assert entry["subject"] == "Where is my order?" and entry["snippet"].startswith("Hello, my order #42")


def test_timeline_shows_a_restricted_inboxs_mail_only_to_those_who_may_see_that_inbox(contacts):
    from mailroom_testing.tokens import auth

    publish_event(contacts.amqp_uri, "inbox_updated", "vip", {
        "inbox_id": "vip", "name": "VIP", "channel_addresses": ["vip@mailroom.test"], "member_emails": [],
        "visibility": "specific", "member_user_ids": ["agent-7"], "team_ids": ["team-gold"]})
    publish_event(contacts.amqp_uri, "inbox_updated", "public", {
        "inbox_id": "public", "name": "Support", "channel_addresses": ["support@mailroom.test"],
        "member_emails": []})
    for channel, subject in (("vip@mailroom.test", "Secret merger"), ("support@mailroom.test", "Broken widget")):
        data = message_received("dora@example.com", channel=channel)
        data["subject"] = subject
        publish_event(contacts.amqp_uri, "message_received", data["intake_id"], data)
    dora = contacts.eventually(lambda: find_by_email(contacts, "dora@example.com"))
    contacts.eventually(lambda: len(contacts.get(f"/api/contacts/{dora['id']}/timeline")[1]["items"]) == 2)

    def subjects(**who):
        return sorted(e["subject"] for e in contacts.get(f"/api/contacts/{dora['id']}/timeline",
                                                         headers=auth(**who))[1]["items"])

    assert subjects(user_id="agent-7") == ["Broken widget", "Secret merger"]  # member of the VIP inbox
    assert subjects(user_id="gold-1", teams=["team-gold"]) == ["Broken widget", "Secret merger"]  # by team
    assert subjects(user_id="someone-else") == ["Broken widget"]  # may not see the VIP inbox
    assert subjects(user_id="auditor", roles=["account_access"]) == ["Broken widget", "Secret merger"]


def test_an_email_we_sent_is_on_every_recipients_timeline_but_never_on_our_inboxes(contacts):
    publish_event(contacts.amqp_uri, "inbox_updated", "sales", {
        "inbox_id": "sales", "name": "Sales", "channel_addresses": ["sales@mailroom.test"], "member_emails": []})
    contacts.eventually(lambda: queue_depth(
        contacts.amqp_uri, "evt-conversations-inbox_updated--contacts.handle_inbox_updated") == 0)
    conversation_id = str(uuid.uuid4())
    sent = {"email_id": str(uuid.uuid4()), "inbox_id": "support", "conversation_id": conversation_id,
            "rfc_message_id": f"{uuid.uuid4()}@mailroom.test", "kind": "compose", "new_conversation": True,
            "from": {"name": "Support", "email": "support@mailroom.test"},
            "to": [{"name": "Zoe", "email": "Zoe@Example.com"}], "cc": [{"name": None, "email": "sales@mailroom.test"}],
            "bcc": [{"name": "Yan", "email": "yan@example.com"}], "subject": "Your order", "text": "It ships  today.",
            "attachments": [], "queued_at": "2026-11-25T11:00:00+00:00", "sent_at": "2026-11-25T11:00:01+00:00",
            "attempts": 1}
    publish_event(contacts.amqp_uri, "email_sent", sent["email_id"], sent)
    for email in ("zoe@example.com", "yan@example.com"):
        contact = contacts.eventually(lambda e=email: find_by_email(contacts, e))
        [entry] = contacts.eventually(lambda c=contact: contacts.get(f"/api/contacts/{c['id']}/timeline")[1]["items"])
        assert (entry["direction"], entry["subject"], entry["snippet"], entry["conversation_id"]) == (
            "out", "Your order", "It ships today.", conversation_id)
    assert find_by_email(contacts, "sales@mailroom.test") is None
    assert find_by_email(contacts, "support@mailroom.test") is None
