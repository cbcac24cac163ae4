"""Calls from the reply editor (docs/calls.md) through the HTTP API of a real conversations process
(RabbitMQ, PostgreSQL): a member logs a call (201), the conversation and its calls list show it
with the contact's number and tel: link, call_logged is published (and checked against the
AsyncAPI document by the stack's contract tap); admins who are no members get 403, users who may
not view 404, no token 401; malformed calls 422 naming the field; the same Idempotency-Key logs
one call, also when the requests race."""

import concurrent.futures
import datetime as dt
import uuid

import pytest

from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import CONVERSATIONS
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import NO_AUTH, auth

pytestmark = pytest.mark.integration

MEMBER = auth("agent-a", email="agent-a@mailroom.test")
TEAM_MEMBER = auth("agent-t", email="agent-t@mailroom.test", teams=["team-t"])
OUTSIDER = auth("agent-x", email="agent-x@mailroom.test", teams=["team-other"])
ACCOUNT_ADMIN = auth("acc-admin", roles=["account_access"])
SUPER_ADMIN = auth("root", roles=["super_admin"])
CALL = {"direction": "outbound", "phone_number": "+49 (030) 1234-567", "outcome": "answered",
        "duration_seconds": 185, "notes": "Promised a refund by Friday.",
        "recording_url": "https://recordings.example/calls/1.mp3", "called_at": "2026-12-06T15:30:00+01:00"}


@pytest.fixture
def stack(stack_factory):
    return stack_factory([CONVERSATIONS], extra_env={"CONVERSATIONS_INBOXES_FILE": ""})


@pytest.fixture
def conversation_id(stack):
    status, inbox = stack.post("/api/inboxes", {
        "name": "Billing", "channels": [{"address": "billing@mailroom.test"}],
        "members": [{"user_id": "agent-a", "email": "agent-a@mailroom.test"}],
        "access": {"visibility": "specific", "teams": ["team-t"]}})
    assert status == 201, inbox
    intake_id = str(uuid.uuid4())
    data = {
        "intake_id": intake_id, "channel_address": "billing@mailroom.test", "via": "smtp",
        "message_id": f"{uuid.uuid4()}@example.com", "subject": "Refund?",
        "sender": {"name": "Ada", "email": "ada@example.com"},
        "attributed_to": {"name": "Ada", "email": "ada@example.com"},
        "to": [{"name": None, "email": "billing@mailroom.test"}], "cc": [], "reply_to": [], "in_reply_to": [],
        "references": [], "reply_token": None, "text": "Hello", "html": None, "size": 10,
        "raw_url": f"/api/ingest/messages/{intake_id}/raw", "attachments": [],
        "received_at": "2026-12-06T10:00:00+00:00",
        "flags": {"auto_submitted": False, "bounce": False, "spam": False, "loop": False, "reasons": []},
    }
    with EventSubscriber(stack.amqp_uri, [("conversations.events", "message_added")]) as events:
        publish_event(stack.amqp_uri, "message_received", intake_id, data)
        [added] = events.wait_for("message_added", lambda e: e["data"]["intake_id"] == intake_id)
    for headers in (MEMBER, TEAM_MEMBER, OUTSIDER, ACCOUNT_ADMIN, SUPER_ADMIN):  # known users (teams)
        assert stack.get("/api/inboxes", headers=headers)[0] == 200
    return added["data"]["conversation_id"]


def calls_of(stack, conversation_id, headers=MEMBER):
    status, body = stack.get(f"/api/conversations/{conversation_id}/calls", headers=headers)
    assert status == 200, body
    return body["items"]


def test_a_member_logs_a_call_shown_in_the_conversation_and_announced(stack, conversation_id):
    with EventSubscriber(stack.amqp_uri, [("conversations.events", "call_logged")]) as events:
        status, call = stack.post(f"/api/conversations/{conversation_id}/calls", CALL, headers=MEMBER)
        assert status == 201, call
        [event] = events.wait_for("call_logged")
    assert set(call) == {"id", "conversation_id", "direction", "phone_number", "outcome", "duration_seconds",
                         "notes", "recording_url", "logged_by", "called_at", "created_at"}
    assert call["phone_number"] == "+49301234567" and call["logged_by"] == "agent-a"
    assert call["conversation_id"] == conversation_id and call["duration_seconds"] == 185
    assert dt.datetime.fromisoformat(call["called_at"]) == dt.datetime(2026, 12, 6, 14, 30, tzinfo=dt.UTC)
    assert event["type"] == "mailroom.call_logged.v1" and event["source"] == "mailroom/conversations"
    data = event["data"]
    assert data["call_id"] == call["id"] and data["conversation_id"] == conversation_id
    assert data["phone_number"] == "+49301234567" and data["logged_by"] == "agent-a" and data["inbox_id"]
    assert data["contact_email"] == "ada@example.com" and data["notes"] == CALL["notes"]

    # a second, inbound call with a default time: both listed oldest first; the latest names the number
    status, second = stack.post(f"/api/conversations/{conversation_id}/calls", {
        "direction": "inbound", "phone_number": "+44 20 7946 0958", "outcome": "voicemail"}, headers=TEAM_MEMBER)
    assert status == 201 and second["duration_seconds"] == 0 and second["notes"] is None
    assert [c["id"] for c in calls_of(stack, conversation_id)] == [call["id"], second["id"]]
    status, conversation = stack.get(f"/api/conversations/{conversation_id}", headers=MEMBER)
    assert status == 200
    assert [c["id"] for c in conversation["calls"]] == [call["id"], second["id"]]
    assert conversation["calls"][0] == call
    assert conversation["contact_phone"] == "+442079460958"
    assert conversation["contact_tel_url"] == "tel:+442079460958"


def test_only_members_log_calls_and_only_viewers_list_them(stack, conversation_id):
    url = f"/api/conversations/{conversation_id}/calls"
    for headers in (ACCOUNT_ADMIN, SUPER_ADMIN):  # may view every inbox, are no members
        status, body = stack.post(url, CALL, headers=headers)
        assert status == 403 and "log calls" in body["error"]["message"]
        assert calls_of(stack, conversation_id, headers) == []
    status, body = stack.post(url, CALL, headers=OUTSIDER)
    assert status == 404 and body["error"]["message"] == f"no conversation {conversation_id}"
    assert stack.get(url, headers=OUTSIDER)[0] == 404
    assert stack.post(url, CALL, headers=NO_AUTH)[0] == 401 and stack.get(url, headers=NO_AUTH)[0] == 401
    assert stack.post("/api/conversations/no-such-id/calls", CALL, headers=MEMBER)[0] == 404
    assert calls_of(stack, conversation_id) == []
    assert stack.get(f"/api/conversations/{conversation_id}", headers=ACCOUNT_ADMIN)[1]["contact_phone"] is None


MALFORMED = [
    ({"phone_number": "030 1234567"}, "phone_number", "no country code"),
    ({"phone_number": "call me maybe"}, "phone_number", "not a phone number"),
    ({"phone_number": "+49" + "1" * 5000}, "phone_number", "phone_number"),
    ({"outcome": "hung_up"}, "outcome", "outcome"),
    ({"direction": None}, "direction", "direction"),
    ({"duration_seconds": -5}, "duration_seconds", "duration_seconds"),
    ({"duration_seconds": "5"}, "duration_seconds", "duration_seconds"),
    ({"recording_url": "http://recordings.example/calls/1.mp3"}, "recording_url", "https"),
    ({"recording_url": "https://user:secret@recordings.example/1.mp3"}, "recording_url", "user name or password"),
    ({"notes": "n" * 10_001}, "notes", "notes"),
    ({"notes": "a\u0000b"}, "notes", "NUL"),
    ({"called_at": "2999-01-01T00:00:00Z"}, "called_at", "future"),
]


def test_a_malformed_call_is_422_with_a_clear_error_and_logs_nothing(stack, conversation_id):
    url = f"/api/conversations/{conversation_id}/calls"
    for change, field, words in MALFORMED:
        status, body = stack.post(url, {**CALL, **change}, headers=MEMBER)
        assert status == 422, (change, body)
        assert body["error"]["code"] == "invalid_call" and field in body["error"]["details"], body
        assert words in body["error"]["message"], body
    status, body = stack.post(url, CALL, headers={**MEMBER, "Idempotency-Key": "k" * 201})
    assert status == 422 and "Idempotency-Key" in body["error"]["message"]
    assert stack.request("POST", url, raw=b"{not json", headers=MEMBER)[0] == 400
    assert stack.request("POST", url, raw=b"[1, 2]", headers=MEMBER)[0] == 400
    assert calls_of(stack, conversation_id) == []


def test_the_same_idempotency_key_logs_one_call(stack, conversation_id):
    url = f"/api/conversations/{conversation_id}/calls"
    key = {**MEMBER, "Idempotency-Key": "call-" + uuid.uuid4().hex}
    body = {k: v for k, v in CALL.items() if k != "called_at"}  # "now": a retry is still the same request
    status, first = stack.post(url, body, headers=key)
    assert status == 201
    status, again = stack.post(url, body, headers=key)
    assert status == 200 and again == first
    status, conflict = stack.post(url, {**body, "outcome": "busy"}, headers=key)
    assert status == 409 and "different call" in conflict["error"]["message"]

    racing = {**MEMBER, "Idempotency-Key": "race-" + uuid.uuid4().hex}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: stack.post(url, {**body, "notes": "race"}, headers=racing), range(8)))
    assert sorted(status for status, _ in answers).count(201) == 1
    assert {status for status, _ in answers} <= {200, 201} and len({call["id"] for _, call in answers}) == 1
    assert [c["id"] for c in calls_of(stack, conversation_id)] == [first["id"], answers[0][1]["id"]]
