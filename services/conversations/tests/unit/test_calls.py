"""Calls from the reply editor (docs/calls.md): the rules (domain/calls.py), the request's
validation (422 naming the field), and the use case and read model against an SQLite database
(who may log, Idempotency-Key, call_logged, the contact's number and its tel: link)."""

import datetime as dt
import json
import uuid

import pytest
from sqlalchemy import select

from conversations import calls, handlers, queries
from conversations.domain import calls as rules
from conversations.models import Call, Conversation, Inbox, outbox
from conversations.service import ConversationsService
from conversations.settings import Settings
from mailroom_shared.auth import Principal
from mailroom_shared.events.catalogue import spec_for
from mailroom_shared.http import Conflict, Forbidden, NotFound

OUTBOX = ConversationsService.outbox
MEMBER = Principal(user_id="agent-a", email="agent-a@team.example")
ADMIN = Principal(user_id="admin", roles=frozenset({"account_access"}))
OUTSIDER = Principal(user_id="agent-x", team_ids=frozenset({"team-other"}))
NOW = dt.datetime(2026, 12, 7, 2, 0, tzinfo=dt.UTC)


# --- the rules --------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "region", "e164"), [
    ("+49 30 1234567", None, "+49301234567"),
    ("+49 (0)30 123-4567", None, "+49301234567"),
    ("tel:+1-202-555-0143", None, "+12025550143"),
    ("030 1234567", "DE", "+49301234567"),
    ("(202) 555-0143", "US", "+12025550143"),
    ("+44 20 7946 0958", "DE", "+442079460958"),  # an international number ignores the region
])
def test_numbers_in_any_human_format_become_e164(raw, region, e164):
    assert rules.normalise_phone_number(raw, region) == e164
    assert rules.tel_url(e164) == f"tel:{e164}"


def test_a_number_without_country_code_needs_a_default_region():
    with pytest.raises(rules.InvalidCall) as refused:
        rules.normalise_phone_number("030 1234567", None)
    assert refused.value.field == "phone_number"
    assert "no country code" in str(refused.value) and "CONVERSATIONS_DEFAULT_PHONE_REGION" in str(refused.value)


@pytest.mark.parametrize("raw", ["", "   ", "call me", "+49 30", "+999 1234567", "+49 30 1234567\x00",
                                 "1" * 65, None, 4930123])
def test_what_is_not_a_phone_number_is_refused(raw):
    with pytest.raises(rules.InvalidCall) as refused:
        rules.normalise_phone_number(raw, "DE")
    assert refused.value.field == "phone_number"


def test_recording_links_are_https_without_credentials():
    assert rules.check_recording_url("https://calls.example/rec/1.mp3") == "https://calls.example/rec/1.mp3"
    assert rules.check_recording_url("  ") is None and rules.check_recording_url(None) is None
    for bad, why in [("http://calls.example/rec.mp3", "https"), ("https://user:pw@calls.example/r", "user name"),
                     ("https://token@calls.example/r", "user name"), ("javascript:alert(1)", "https"),
                     ("https:///nohost", "no host"), ("https://calls.example/a b", "spaces"),
                     ("https://calls.example:99999/r", "not a valid URL"),
                     ("https://calls.example/" + "a" * 2048, "2048")]:
        with pytest.raises(rules.InvalidCall, match=why):
            rules.check_recording_url(bad)


def test_notes_and_call_times():
    assert rules.check_notes("Promised a refund") == "Promised a refund"
    assert rules.check_notes(" \n ") is None
    with pytest.raises(rules.InvalidCall, match="10000"):
        rules.check_notes("x" * 10_001)
    with pytest.raises(rules.InvalidCall, match="NUL"):
        rules.check_notes("a\x00b")
    assert rules.check_called_at(None, NOW) == NOW
    assert rules.check_called_at(NOW + dt.timedelta(minutes=4), NOW) == NOW + dt.timedelta(minutes=4)  # clock skew
    assert rules.check_called_at(dt.datetime(2026, 12, 1, 9, 0), NOW) == dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    with pytest.raises(rules.InvalidCall, match="future"):
        rules.check_called_at(NOW + dt.timedelta(hours=1), NOW)


def test_the_region_setting_is_checked_at_start(monkeypatch):
    from conversations import settings
    from mailroom_shared.config import ConfigError

    monkeypatch.setenv("CONVERSATIONS_INBOXES_FILE", "")
    monkeypatch.setenv("CONVERSATIONS_DEFAULT_PHONE_REGION", "de")
    assert settings.load().default_phone_region == "DE"
    monkeypatch.setenv("CONVERSATIONS_DEFAULT_PHONE_REGION", "Germany")
    with pytest.raises(ConfigError, match="CONVERSATIONS_DEFAULT_PHONE_REGION"):
        settings.load()
    monkeypatch.delenv("CONVERSATIONS_DEFAULT_PHONE_REGION")
    assert settings.load().default_phone_region is None


# --- the request: 422 naming the field ------------------------------------------------------------

GOOD = {"direction": "outbound", "phone_number": "+49 30 1234567", "outcome": "answered", "duration_seconds": 125,
        "notes": "Refund promised", "recording_url": "https://calls.example/r/1.mp3"}


@pytest.mark.parametrize(("change", "field"), [
    ({"direction": "sideways"}, "direction"),
    ({"outcome": "hung_up"}, "outcome"),
    ({"outcome": None}, "outcome"),
    ({"duration_seconds": -1}, "duration_seconds"),
    ({"duration_seconds": 86_401}, "duration_seconds"),
    ({"duration_seconds": "60"}, "duration_seconds"),
    ({"duration_seconds": 1.5}, "duration_seconds"),
    ({"notes": "x" * 10_001}, "notes"),
    ({"recording_url": "http://calls.example/r.mp3"}, "recording_url"),
    ({"recording_url": "https://u:p@calls.example/r.mp3"}, "recording_url"),
    ({"phone_number": "030 1234567"}, "phone_number"),
    ({"phone_number": "not a number"}, "phone_number"),
    ({"phone_number": ["+49301234567"]}, "phone_number"),
    ({"called_at": "yesterday"}, "called_at"),
    ({"called_at": "2999-01-01T00:00:00Z"}, "called_at"),
    ({"extra": "field"}, "extra"),
])
def test_a_malformed_call_is_refused_with_422_naming_the_field(change, field):
    with pytest.raises(calls.InvalidCallRequest) as refused:
        calls.read_call({**GOOD, **change}, None, Settings())
    assert refused.value.status == 422
    assert field in refused.value.details and field in refused.value.message


def test_a_missing_field_is_refused_and_a_region_admits_national_numbers():
    with pytest.raises(calls.InvalidCallRequest, match="phone_number"):
        calls.read_call({"direction": "inbound", "outcome": "busy"}, None, Settings())
    call, key, digest = calls.read_call({**GOOD, "phone_number": "030 1234567"}, None,
                                        Settings(default_phone_region="DE"))
    assert call["phone_number"] == "+49301234567" and key is None and digest is None


def test_the_idempotency_key_is_bounded_and_digests_the_request_as_sent():
    with pytest.raises(calls.InvalidCallRequest, match="Idempotency-Key"):
        calls.read_call(GOOD, "k" * 201, Settings())
    _, key, first = calls.read_call(GOOD, "key-1", Settings())
    _, _, again = calls.read_call(GOOD, "key-1", Settings())  # "now" differs; the digest does not
    _, _, other = calls.read_call({**GOOD, "outcome": "busy"}, "key-1", Settings())
    assert key == "key-1" and first == again != other


# --- the use case and the read model (SQLite) ---------------------------------------------------

@pytest.fixture
def conversation_id(database):
    with database.transaction() as session:
        handlers.create_inbox(session, OUTBOX, {
            "name": "Billing", "channels": [{"address": "billing@team.example"}],
            "members": [{"user_id": "agent-a", "email": "agent-a@team.example"}],
            "access": {"visibility": "specific", "teams": []}})
        received = handlers.receive_message(session, OUTBOX, {
            "intake_id": str(uuid.uuid4()), "channel_address": "billing@team.example", "via": "smtp",
            "message_id": f"{uuid.uuid4()}@customer.example", "subject": "Refund?",
            "sender": {"name": "Ada", "email": "ada@customer.example"},
            "attributed_to": {"name": "Ada", "email": "ada@customer.example"},
            "to": [{"email": "billing@team.example"}], "text": "Hello", "html": None, "attachments": [],
            "raw_url": "/raw/x", "received_at": "2026-12-06T10:00:00+00:00",
            "flags": {"spam": False, "loop": False, "auto_submitted": False, "bounce": False}}, Settings())
        handlers.learn_contact(session, "contact-ada", ["ada@customer.example"])
        return received.conversation.id


def call_events(session):
    return [json.loads(row.envelope) if isinstance(row.envelope, str) else row.envelope
            for row in session.execute(select(outbox).where(outbox.c.event_type == "call_logged"))]


def log(database, principal, conversation_id, body=GOOD, key=None):
    call, key, digest = calls.read_call(body, key, Settings())
    with database.transaction() as session:
        row, created = calls.log_call(session, OUTBOX, principal, conversation_id, call, key, digest)
        return queries.call_view(row), created


def test_a_member_logs_a_call_which_the_conversation_shows_with_the_contacts_number(database, conversation_id):
    view, created = log(database, MEMBER, conversation_id, {**GOOD, "called_at": "2026-12-06T11:00:00+01:00"})
    assert created
    assert {k: view[k] for k in ("conversation_id", "direction", "phone_number", "outcome", "duration_seconds",
                                 "notes", "recording_url", "logged_by")} == {
        "conversation_id": conversation_id, "direction": "outbound", "phone_number": "+49301234567",
        "outcome": "answered", "duration_seconds": 125, "notes": "Refund promised",
        "recording_url": "https://calls.example/r/1.mp3", "logged_by": "agent-a"}
    assert view["called_at"] == "2026-12-06T10:00:00+00:00" and view["created_at"]
    with database.transaction() as session:
        [event] = call_events(session)
        data = event["data"]
        assert data["call_id"] == view["id"] and data["contact_id"] == "contact-ada"
        assert data["inbox_id"] and data["phone_number"] == "+49301234567" and data["logged_by"] == "agent-a"
        assert spec_for("call_logged", 1).schema().validate(data) == {}
        conversation = session.get(Conversation, conversation_id)
        shown = queries.conversation_view(session, conversation, session.get(Inbox, conversation.inbox_id), MEMBER)
    assert shown["calls"] == [view]
    assert shown["contact_phone"] == "+49301234567" and shown["contact_tel_url"] == "tel:+49301234567"


def test_calls_are_listed_oldest_first_and_the_latest_names_the_number(database, conversation_id):
    later, _ = log(database, MEMBER, conversation_id,
                   {**GOOD, "phone_number": "+44 20 7946 0958", "called_at": "2026-12-06T12:00:00Z"})
    earlier, _ = log(database, MEMBER, conversation_id, {**GOOD, "called_at": "2026-12-06T09:00:00Z"})
    with database.transaction() as session:
        assert [c["id"] for c in queries.calls_of(session, conversation_id)] == [earlier["id"], later["id"]]
        assert queries.contact_phone(session, session.get(Conversation, conversation_id)) == "+442079460958"


def test_the_contacts_number_comes_from_its_other_conversations_too(database, conversation_id):
    log(database, MEMBER, conversation_id)
    with database.transaction() as session:
        home = session.get(Conversation, conversation_id)
        other = Conversation(id=str(uuid.uuid4()), inbox_id=home.inbox_id, subject="Another", status="open",
                             reply_token=uuid.uuid4().hex, contact_email="ada@customer.example",
                             contact_id="contact-ada", last_message_at=NOW)
        stranger = Conversation(id=str(uuid.uuid4()), inbox_id=home.inbox_id, subject="Else", status="open",
                                reply_token=uuid.uuid4().hex, contact_email="bob@customer.example",
                                contact_id="contact-bob", last_message_at=NOW)
        whatsapp = Conversation(id=str(uuid.uuid4()), inbox_id=home.inbox_id, subject="Chat", status="open",
                                reply_token=uuid.uuid4().hex, contact_id=None, last_message_at=NOW,
                                channel_type="chat", channel_kind="whatsapp", external_thread_id="+15551234567")
        session.add_all([other, stranger, whatsapp])
        session.flush()
        assert queries.contact_phone(session, other) == "+49301234567"
        assert queries.call_fields(session, stranger)["contact_tel_url"] is None
        assert queries.call_fields(session, whatsapp)["contact_tel_url"] == "tel:+15551234567"
        assert queries.call_fields(session, other)["calls"] == []  # calls stay on their conversation


def test_only_members_log_calls(database, conversation_id):
    with pytest.raises(Forbidden, match="log calls"):
        log(database, ADMIN, conversation_id)  # may view every inbox, is no member
    with pytest.raises(NotFound):
        log(database, OUTSIDER, conversation_id)  # may not even view it
    with pytest.raises(NotFound):
        log(database, MEMBER, "no-such-conversation")
    with database.transaction() as session:
        assert session.execute(select(Call)).all() == [] and call_events(session) == []


def test_the_same_idempotency_key_logs_one_call(database, conversation_id):
    first, created = log(database, MEMBER, conversation_id, key="call-1")
    again, created_again = log(database, MEMBER, conversation_id, key="call-1")
    assert created and not created_again and again == first
    with pytest.raises(Conflict, match="different call"):
        log(database, MEMBER, conversation_id, {**GOOD, "outcome": "busy"}, key="call-1")
    other_key, _ = log(database, MEMBER, conversation_id, key="call-2")
    assert other_key["id"] != first["id"]
    with database.transaction() as session:
        assert len(session.execute(select(Call)).all()) == 2 and len(call_events(session)) == 2


def test_an_erased_contacts_calls_go(database, conversation_id):
    log(database, MEMBER, conversation_id)
    with database.transaction() as session:
        assert calls.erase_calls(session, {"contact_id": "contact-ada", "identities": []}) == 1
        assert session.execute(select(Call)).all() == []
