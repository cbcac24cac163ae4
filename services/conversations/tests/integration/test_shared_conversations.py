"""One email to several team inboxes is one conversation (issue #17), against the real
conversations service, RabbitMQ and PostgreSQL: copies handled at the same moment by concurrent
consumers still make one conversation (the advisory lock keyed by Message-ID and sender), a
redelivered copy changes nothing, a copy without a sender or from someone else is never joined,
and a shared conversation moves with its shared inboxes kept."""

import time
import uuid

import pytest

from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import CONVERSATIONS
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import auth

pytestmark = pytest.mark.integration

EVENTS = [("conversations.events", "#")]
A, B, C, D = "billing@mailroom.test", "sales@mailroom.test", "legal@mailroom.test", "other@mailroom.test"
AGENT_B = auth("agent-b", email="agent-b@mailroom.test")
AGENT_AC = auth("agent-ac", email="agent-ac@mailroom.test")


@pytest.fixture
def stack(stack_factory):
    started = stack_factory([CONVERSATIONS], extra_env={"CONVERSATIONS_INBOXES_FILE": ""})
    started.inbox = {}
    for address, members in ((A, ["agent-ac"]), (B, ["agent-b"]), (C, ["agent-ac"])):
        status, inbox = started.post("/api/inboxes", {
            "name": address.split("@")[0], "channels": [{"address": address}],
            "members": [{"user_id": m, "email": f"{m}@mailroom.test"} for m in members],
            "access": {"visibility": "specific"}})
        assert status == 201, inbox
        started.inbox[address] = inbox["id"]
    for headers in (AGENT_B, AGENT_AC):
        assert started.get("/api/inboxes", headers=headers)[0] == 200
    return started


def copy_for(channel, message_id, sender="ada@example.com", to=(A, B), text="Two questions."):
    intake_id = str(uuid.uuid4())
    return {
        "intake_id": intake_id, "channel_address": channel, "via": "smtp", "message_id": message_id,
        "subject": "Invoice and a quote", "sender": {"name": "Ada", "email": sender} if sender else None,
        "attributed_to": {"name": "Ada", "email": sender or "unknown@example.com"},
        "to": [{"name": None, "email": t} for t in to], "cc": [], "reply_to": [], "in_reply_to": [],
        "references": [], "reply_token": None, "text": text, "html": None, "size": 10,
        "raw_url": f"/api/ingest/messages/{intake_id}/raw", "attachments": [],
        "received_at": "2026-12-07T09:00:00+00:00",
        "flags": {"auto_submitted": False, "bounce": False, "spam": False, "loop": False, "reasons": []},
    }


def publish(stack, data):
    publish_event(stack.amqp_uri, "message_received", data["intake_id"], data)
    return data


def handled(events, *copies, timeout=30.0):
    """Wait until every copy led to message_added or conversation_shared."""
    wanted = {c["intake_id"] for c in copies}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = {e["data"].get("intake_id") for kind in ("message_added", "conversation_shared")
                for e in events.of_type(kind)}
        if wanted <= seen:
            return
        time.sleep(0.05)
    raise AssertionError(f"not handled within {timeout}s: {sorted(wanted - seen)}")


def test_concurrent_copies_for_two_inboxes_make_one_conversation_each(stack):
    pairs = [(copy_for(A, f"<race-{i}@example.com>"), copy_for(B, f"<race-{i}@example.com>")) for i in range(8)]
    with EventSubscriber(stack.amqp_uri, EVENTS) as events:
        for first, second in pairs:  # back to back: the consumers handle them side by side
            publish(stack, first)
            publish(stack, second)
        handled(events, *[c for pair in pairs for c in pair])
        for first, second in pairs:
            added = [e for e in events.of_type("message_added") if e["data"]["intake_id"] in
                     (first["intake_id"], second["intake_id"])]
            shared = [e for e in events.of_type("conversation_shared") if e["data"]["intake_id"] in
                      (first["intake_id"], second["intake_id"])]
            assert len(added) == 1 and len(shared) == 1, (first["message_id"], added, shared)
            assert shared[0]["data"]["conversation_id"] == added[0]["data"]["conversation_id"]
            assert sorted(shared[0]["data"]["inbox_ids"]) == sorted([stack.inbox[A], stack.inbox[B]])
    for inbox in (A, B):
        page = stack.get(f"/api/inboxes/{stack.inbox[inbox]}/conversations?view=all&limit=50")[1]
        assert len(page["items"]) == 8, inbox
        assert stack.get(f"/api/inboxes/{stack.inbox[inbox]}/views")[1]["open"] == 8


def test_redelivered_senderless_and_foreign_copies(stack):
    with EventSubscriber(stack.amqp_uri, EVENTS) as events:
        first = publish(stack, copy_for(A, "<m1@example.com>"))
        second = publish(stack, copy_for(B, " <m1@example.com> "))  # the same id, written differently
        handled(events, first, second)
        [added] = [e for e in events.of_type("message_added") if e["data"]["intake_id"] == first["intake_id"]]
        conversation_id = added["data"]["conversation_id"]
        # the same copy redelivered (as RabbitMQ may): nothing is added or shared again
        publish_event(stack.amqp_uri, "message_received", second["intake_id"], second)
        # no sender at all (a broken From): never joins anything; someone else: neither
        status, other = stack.post("/api/inboxes", {"name": "Other", "channels": [{"address": D}]})
        assert status == 201, other
        stack.eventually(lambda: stack.get(f"/api/inboxes/{other['id']}")[0] == 200)
        senderless = publish(stack, copy_for(D, "<m1@example.com>", sender=None, to=(A, D)))
        foreign = publish(stack, copy_for(C, "<m1@example.com>", sender="mallory@evil.example", to=(A, C)))
        handled(events, senderless, foreign)
        created = [e for e in events.of_type("message_added")
                   if e["data"]["intake_id"] in (senderless["intake_id"], foreign["intake_id"])]
        assert len(created) == 2 and all(e["data"]["conversation_id"] != conversation_id for e in created)
        assert len(events.of_type("conversation_shared")) == 1
    detail = stack.get(f"/api/conversations/{conversation_id}")[1]
    assert detail["inbox_ids"] == [stack.inbox[A], stack.inbox[B]] and detail["message_count"] == 1


def test_a_shared_conversation_moves_and_keeps_its_other_inbox(stack):
    with EventSubscriber(stack.amqp_uri, EVENTS) as events:
        first = publish(stack, copy_for(A, "<move-1@example.com>"))
        handled(events, first)
        second = publish(stack, copy_for(B, "<move-1@example.com>"))
        handled(events, second)
        conversation_id = events.of_type("conversation_shared")[0]["data"]["conversation_id"]
    url = f"/api/conversations/{conversation_id}"
    assert stack.post(f"{url}/assign", {"assignee_user_id": "agent-b"}, headers=AGENT_AC)[0] == 200
    # agent-b acts on it through Sales but may not move it into Legal (not theirs): 404 as for nothing
    assert stack.post(f"{url}/move", {"inbox_id": stack.inbox[C]}, headers=AGENT_B)[0] == 404
    status, moved = stack.post(f"{url}/move", {"inbox_id": stack.inbox[C]}, headers=AGENT_AC)
    assert status == 200, moved
    detail = stack.get(url, headers=AGENT_B)[1]
    assert detail["inbox_ids"] == [stack.inbox[C], stack.inbox[B]] and detail["assignee_user_id"] == "agent-b"
    assert detail["permissions"] == {"view": True, "act": True}
    assert stack.get(f"/api/inboxes/{stack.inbox[A]}/conversations?view=all")[1]["items"] == []
    assert stack.post(f"{url}/close", {}, headers=AGENT_B)[0] == 200
