"""Calls on the contact's timeline (docs/calls.md), against real conversations and contacts
processes (RabbitMQ, PostgreSQL): a call a member logs in conversations reaches contacts as
call_logged, shows on the timeline as an entry of kind `call` linked to its conversation, and
its number becomes the contact's phone identity — never taken from a contact who has it
already. A redelivered or replayed call_logged adds nothing; a malformed one is not logged."""

import uuid

import pytest

from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import CONTACTS, CONVERSATIONS
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import auth

pytestmark = pytest.mark.integration

MEMBER = auth("agent-a", email="agent-a@mailroom.test")
STRANGER = auth("agent-x", email="agent-x@mailroom.test", teams=["team-other"])
INBOX = "calls@mailroom.test"


@pytest.fixture
def stack(stack_factory):
    stack = stack_factory([CONVERSATIONS, CONTACTS], extra_env={"CONVERSATIONS_INBOXES_FILE": ""})
    status, inbox = stack.post("/api/inboxes", {
        "name": "Calls", "channels": [{"address": INBOX}],
        "members": [{"user_id": "agent-a", "email": "agent-a@mailroom.test"}],
        "access": {"visibility": "specific", "teams": []}})
    assert status == 201, inbox
    stack.inbox_id = inbox["id"]
    return stack


def customer_writes(stack, email, name):
    """(conversation id, contact id) once conversations knows the contact of the new conversation."""
    intake_id = str(uuid.uuid4())
    data = {
        "intake_id": intake_id, "channel_address": INBOX, "via": "smtp", "message_id": f"{intake_id}@example.com",
        "subject": "Call me back", "sender": {"name": name, "email": email},
        "attributed_to": {"name": name, "email": email}, "to": [{"name": None, "email": INBOX}], "cc": [],
        "reply_to": [], "in_reply_to": [], "references": [], "reply_token": None, "text": "Please call me.",
        "html": None, "size": 10, "raw_url": f"/api/ingest/messages/{intake_id}/raw", "attachments": [],
        "received_at": "2026-12-06T10:00:00+00:00",
        "flags": {"auto_submitted": False, "bounce": False, "spam": False, "loop": False, "reasons": []},
    }
    with EventSubscriber(stack.amqp_uri, [("conversations.events", "message_added")]) as events:
        publish_event(stack.amqp_uri, "message_received", intake_id, data)
        [added] = events.wait_for("message_added", lambda e: e["data"]["intake_id"] == intake_id)
    conversation_id = added["data"]["conversation_id"]
    contact_id = stack.eventually(
        lambda: stack.get(f"/api/conversations/{conversation_id}")[1]["contact"]["contact_id"])
    return conversation_id, contact_id


def timeline(stack, contact_id, headers=None):
    status, body = stack.get(f"/api/contacts/{contact_id}/timeline", **({"headers": headers} if headers else {}))
    assert status == 200, body
    return body["items"]


def calls_on(stack, contact_id, headers=None):
    return [e for e in timeline(stack, contact_id, headers) if e["kind"] == "call"]


def test_a_logged_call_is_on_the_contacts_timeline_and_gives_the_contact_its_number(stack):
    conversation_id, ada = customer_writes(stack, "ada@example.com", "Ada")
    status, call = stack.post(f"/api/conversations/{conversation_id}/calls", {
        "direction": "outbound", "phone_number": "+49 30 1234567", "outcome": "answered", "duration_seconds": 185,
        "notes": "Promised  a refund\nby Friday.", "recording_url": "https://recordings.example/1.mp3",
        "called_at": "2026-12-06T14:30:00Z"}, headers=MEMBER)
    assert status == 201, call

    [entry] = stack.eventually(lambda: calls_on(stack, ada))
    assert entry["direction"] == "out" and entry["conversation_id"] == conversation_id
    assert entry["subject"] == "Outbound call · answered · 3 min 05 s"
    assert entry["snippet"] == "Promised a refund by Friday." and entry["channel_address"] == "phone:+49301234567"
    assert entry["occurred_at"].startswith("2026-12-06T14:30:00")
    assert entry["call"] == {
        "call_id": call["id"], "direction": "outbound", "phone_number": "+49301234567", "outcome": "answered",
        "duration_seconds": 185, "notes": "Promised  a refund\nby Friday.",
        "recording_url": "https://recordings.example/1.mp3", "logged_by": "agent-a",
        "called_at": call["called_at"]}
    assert [e["kind"] for e in timeline(stack, ada)] == ["call", "message"]  # newest first, the email too
    status, contact = stack.get(f"/api/contacts/{ada}")
    assert status == 200 and {"kind": "phone", "value": "+49301234567"} in contact["identities"]
    # the timeline shows an inbox's calls only to whoever may see that inbox, as its mail
    assert calls_on(stack, ada, STRANGER) == []
    assert len(calls_on(stack, ada, MEMBER)) == 1


def test_a_number_another_contact_has_stays_theirs(stack):
    ada_conversation, ada = customer_writes(stack, "ada@example.com", "Ada")
    bob_conversation, bob = customer_writes(stack, "bob@example.com", "Bob")
    body = {"direction": "inbound", "phone_number": "+44 20 7946 0958", "outcome": "voicemail"}
    assert stack.post(f"/api/conversations/{ada_conversation}/calls", body, headers=MEMBER)[0] == 201
    stack.eventually(lambda: calls_on(stack, ada))
    # Bob called from Ada's number (a shared office line): on Bob's timeline, still Ada's identity
    assert stack.post(f"/api/conversations/{bob_conversation}/calls", body, headers=MEMBER)[0] == 201
    [entry] = stack.eventually(lambda: calls_on(stack, bob))
    assert entry["direction"] == "in" and entry["subject"] == "Inbound call · voicemail"
    phones = {who: [i["value"] for i in stack.get(f"/api/contacts/{who}")[1]["identities"] if i["kind"] == "phone"]
              for who in (ada, bob)}
    assert phones == {ada: ["+442079460958"], bob: []}
    assert stack.get(f"/api/conversations/{bob_conversation}")[1]["contact_tel_url"] == "tel:+442079460958"


def test_a_redelivered_call_is_logged_once_and_a_malformed_one_not_at_all(stack):
    conversation_id, ada = customer_writes(stack, "ada@example.com", "Ada")
    call_id = str(uuid.uuid4())
    data = {"call_id": call_id, "conversation_id": conversation_id, "inbox_id": stack.inbox_id, "contact_id": ada,
            "contact_email": "ada@example.com", "contact_name": "Ada", "direction": "outbound",
            "phone_number": "+12025550143", "outcome": "no_answer", "duration_seconds": 0, "notes": None,
            "recording_url": None, "logged_by": "agent-a", "logged_by_email": None,
            "called_at": "2026-12-06T09:00:00+00:00", "created_at": "2026-12-06T09:00:01+00:00"}
    envelope = publish_event(stack.amqp_uri, "call_logged", call_id, data)
    publish_event(stack.amqp_uri, "call_logged", call_id, data, event_id=envelope["id"])  # redelivered
    publish_event(stack.amqp_uri, "call_logged", call_id, data)  # replayed under a new event id
    bad_id = str(uuid.uuid4())
    publish_event(stack.amqp_uri, "call_logged", bad_id, {**data, "call_id": bad_id, "phone_number": "not a number"})
    # a later call proves the earlier ones were all consumed
    later = {**data, "call_id": str(uuid.uuid4()), "called_at": "2026-12-06T10:30:00+00:00"}
    publish_event(stack.amqp_uri, "call_logged", later["call_id"], later)
    stack.eventually(lambda: any(e["call"]["call_id"] == later["call_id"] for e in calls_on(stack, ada)))
    assert sorted(e["call"]["call_id"] for e in calls_on(stack, ada)) == sorted([call_id, later["call_id"]])
