"""Unread state per user (domain/read_marks.py) through the real service: the conversation lists
say `unread` for the caller, the view counts carry `unread_counts`, POST …/read and …/unread mark
it for the caller only; new inbound mail makes it unread again. Real RabbitMQ and PostgreSQL."""

import datetime as dt
import uuid

import pytest

from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import CONVERSATIONS
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import NO_AUTH, auth

pytestmark = pytest.mark.integration

MEMBER_A = auth("reader-a", email="reader-a@mailroom.test")
MEMBER_B = auth("reader-b", email="reader-b@mailroom.test")
ADMIN = auth("acc-admin", roles=["account_access"])  # views every inbox, member of none
OUTSIDER = auth("reader-x", email="reader-x@mailroom.test")
INBOX = "reads@mailroom.test"
T0 = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


def message_received(*, subject="Where is my order?", in_reply_to=(), minutes=0, sender="ada@example.com"):
    intake_id = str(uuid.uuid4())
    return {
        "intake_id": intake_id, "channel_address": INBOX, "via": "smtp", "message_id": f"{uuid.uuid4()}@example.com",
        "subject": subject, "sender": {"name": "Ada", "email": sender},
        "attributed_to": {"name": "Ada", "email": sender},
        "to": [{"name": None, "email": INBOX}], "cc": [], "reply_to": [], "in_reply_to": list(in_reply_to),
        "references": list(in_reply_to), "reply_token": None, "text": "Hello", "html": None, "size": 10,
        "raw_url": f"/api/ingest/messages/{intake_id}/raw", "attachments": [],
        "received_at": (T0 + dt.timedelta(minutes=minutes)).isoformat(),
        "flags": {"auto_submitted": False, "bounce": False, "spam": False, "loop": False, "reasons": []},
    }


@pytest.fixture
def world(stack_factory, amqp_uri):
    stack = stack_factory([CONVERSATIONS], extra_env={"CONVERSATIONS_INBOXES_FILE": ""})
    status, inbox = stack.post("/api/inboxes", {
        "name": "Reads", "channels": [{"address": INBOX}],
        "members": [{"user_id": "reader-a", "email": "reader-a@mailroom.test"},
                    {"user_id": "reader-b", "email": "reader-b@mailroom.test"}],
        "access": {"visibility": "specific", "teams": []}})
    assert status == 201, inbox
    with EventSubscriber(amqp_uri, [("conversations.events", "message_added")]) as events:
        yield stack, inbox["id"], events


def receive(stack, events, **kwargs):
    data = message_received(**kwargs)
    publish_event(stack.amqp_uri, "message_received", data["intake_id"], data)
    [added] = events.wait_for("message_added", lambda e: e["data"]["intake_id"] == data["intake_id"])
    return added["data"]["conversation_id"], data["message_id"]


def unread(stack, inbox_id, headers, view="open"):
    status, page = stack.get(f"/api/inboxes/{inbox_id}/conversations?view={view}", headers=headers)
    assert status == 200, page
    return {item["id"]: item["unread"] for item in page["items"]}


def counts(stack, inbox_id, headers):
    status, body = stack.get(f"/api/inboxes/{inbox_id}/views", headers=headers)
    assert status == 200, body
    return body


def mark(stack, conversation_id, what, headers):
    return stack.post(f"/api/conversations/{conversation_id}/{what}", headers=headers)[0]


def test_unread_is_per_user_and_new_inbound_mail_makes_it_unread_again(world):
    stack, inbox_id, events = world
    first, first_message_id = receive(stack, events)
    second, _ = receive(stack, events, subject="Another question", minutes=1, sender="bob@example.com")
    assert unread(stack, inbox_id, MEMBER_A) == {first: True, second: True}
    before = counts(stack, inbox_id, MEMBER_A)
    assert before["open"] == 2 and before["unread_counts"]["open"] == 2 and before["unread_counts"]["closed"] == 0

    assert mark(stack, first, "read", MEMBER_A) == 204
    assert mark(stack, first, "read", MEMBER_A) == 204  # again: the same state
    assert unread(stack, inbox_id, MEMBER_A) == {first: False, second: True}
    assert unread(stack, inbox_id, MEMBER_B) == {first: True, second: True}  # B's state is B's
    after = counts(stack, inbox_id, MEMBER_A)
    assert after["open"] == 2 and after["unread_counts"]["open"] == 1 and after["unread_counts"]["all"] == 1
    assert counts(stack, inbox_id, MEMBER_B)["unread_counts"]["open"] == 2
    status, everywhere = stack.get("/api/conversations?view=open", headers=MEMBER_A)
    assert status == 200 and {i["id"]: i["unread"] for i in everywhere["items"]} == {first: False, second: True}
    status, all_counts = stack.get("/api/conversations/views", headers=MEMBER_A)
    assert status == 200 and all_counts["unread_counts"]["open"] == 1 and all_counts["open"] == 2

    # the customer answers: unread again for A (and still for B)
    joined, _ = receive(stack, events, subject="Re: Where is my order?", in_reply_to=[f"<{first_message_id}>"],
                        minutes=2)
    assert joined == first
    assert unread(stack, inbox_id, MEMBER_A)[first] is True
    assert mark(stack, first, "read", MEMBER_A) == 204
    assert unread(stack, inbox_id, MEMBER_A)[first] is False


def test_mark_unread_and_who_may_mark(world):
    stack, inbox_id, events = world
    conversation, _ = receive(stack, events)
    assert mark(stack, conversation, "read", MEMBER_A) == 204
    assert mark(stack, conversation, "unread", MEMBER_A) == 204
    assert unread(stack, inbox_id, MEMBER_A)[conversation] is True
    assert mark(stack, conversation, "read", MEMBER_A) == 204

    # an admin who is no member may mark for themselves (their own state, not an act)
    assert mark(stack, conversation, "read", ADMIN) == 204
    assert unread(stack, inbox_id, ADMIN)[conversation] is False
    assert mark(stack, conversation, "unread", ADMIN) == 204
    assert unread(stack, inbox_id, ADMIN)[conversation] is True
    assert unread(stack, inbox_id, MEMBER_A)[conversation] is False  # A's state untouched

    # whoever may not view it: as if it did not exist; no token: 401
    assert mark(stack, conversation, "read", OUTSIDER) == 404
    assert mark(stack, conversation, "unread", OUTSIDER) == 404
    assert mark(stack, str(uuid.uuid4()), "read", MEMBER_A) == 404
    assert mark(stack, conversation, "read", NO_AUTH) == 401
    assert mark(stack, "x%00y", "read", MEMBER_A) == 400  # NUL in the path: refused, not a 500
    assert mark(stack, "%27%3B%20DROP%20TABLE%20read_marks%3B%20--", "read", MEMBER_A) == 404
    assert unread(stack, inbox_id, MEMBER_A)[conversation] is False  # nothing else changed


def test_a_conversation_with_only_our_own_email_is_not_unread(world):
    """Only inbound mail makes a conversation unread: a compose (our email, no answer yet) is not."""
    stack, inbox_id, events = world
    conversation_id, email_id = str(uuid.uuid4()), str(uuid.uuid4())
    publish_event(stack.amqp_uri, "email_queued", email_id, {
        "email_id": email_id, "conversation_id": conversation_id, "inbox_id": inbox_id, "kind": "compose",
        "new_conversation": True, "rfc_message_id": f"{email_id}@mailroom.test", "subject": "We have news",
        "from": {"name": "Reads", "email": INBOX}, "to": [{"name": None, "email": "ada@example.com"}],
        "text": "Hi", "queued_at": T0.isoformat()})
    status, page = stack.eventually(lambda: (lambda r: r if r[1].get("items") else None)(
        stack.get(f"/api/inboxes/{inbox_id}/conversations?view=all", headers=MEMBER_A)))
    assert status == 200 and [(i["id"], i["unread"]) for i in page["items"]] == [(conversation_id, False)]
    assert counts(stack, inbox_id, MEMBER_A)["unread_counts"]["all"] == 0
