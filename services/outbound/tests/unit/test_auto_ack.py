"""Automatic acknowledgement per inbox with a real database session (an SQLite file): the settings
are checked when saved, a new conversation's first message is answered once, to its Return-Path,
as an RFC 3834 auto-reply; automatic mail, bounces, lists, spam, loops, our own inboxes, a missing
Return-Path, a suppressed address and a sender acknowledged within the period get nothing."""

import datetime as dt
from email import policy
from email.parser import BytesParser

import pytest
from sqlalchemy import select

from mailroom_shared.auth import Principal
from mailroom_shared.db import Database
from mailroom_shared.http import HttpError
from mailroom_shared.messaging.outbox import Outbox
from outbound import auto_ack, models, suppressions
from outbound.domain import auto_ack as rules
from outbound.domain import suppression
from outbound.models import AutoAcknowledged, Email
from outbound.settings import Settings

PUBLISHES = {"email_queued": 1, "email_sent": 1, "email_deferred": 1, "email_failed": 1, "email_bounced": 1}
SETTINGS = Settings(message_id_domain="mailroom.test")
AGENT = Principal("agent-1")
INBOX = {"inbox_id": "inbox-1", "name": "Support", "primary_address": "support@mailroom.test",
         "identities": [{"email": "support@mailroom.test", "name": "Support Team"}]}


@pytest.fixture
def database(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'outbound.db'}")
    models.Base.metadata.create_all(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def outbox():
    return Outbox(models.outbox, publishes=PUBLISHES)


def message(**flags):
    return {"id": "m1", "direction": "in", "rfc_message_id": "orig-1@example.com", "subject": "Order #42 late",
            "sender": {"name": "Ada", "email": "ada@example.com"}, "attributed_to": None, "forward": None,
            "to": [{"name": None, "email": "support@mailroom.test"}], "cc": [], "reply_to": [], "in_reply_to": [],
            "references": [], "text": "Hi", "html": None, "channel_address": "support@mailroom.test",
            "flags": {"auto_submitted": False, "bounce": False, "spam": False, "loop": False, "reasons": [],
                      "return_path": "ada-bounces@example.com", **flags}}


def context(conversation_id="conv-1", **flags):
    return {"conversation": {"id": conversation_id, "inbox_id": "inbox-1", "subject": "Order #42 late",
                             "reply_token": "tok", "created_at": "2026-11-25T10:00:00+00:00",
                             "contact": {"email": "ada@example.com", "name": "Ada Lovelace"}},
            "inbox": INBOX, "message": message(**flags), "channel_address": "support@mailroom.test"}


def enable(database, **values):
    with database.transaction() as session:
        return auto_ack.write(session, "inbox-1", {"enabled": True, "text": "Hi {{ contact.first_name }}, we got "
                                                   "'{{ conversation.subject }}'.", **values}, AGENT)


def ack(database, outbox, ctx):
    with database.transaction() as session:
        setting = auto_ack.enabled_for(session, "inbox-1")
        email = auto_ack.acknowledge(session, outbox, SETTINGS, setting, ctx,
                                     {"conversation_id": ctx["conversation"]["id"], "inbox_id": "inbox-1"})
        return email.id if email else None


def raw_of(database, email_id):
    with database.transaction() as session:
        return BytesParser(policy=policy.default).parsebytes(session.get(Email, email_id).raw)


def test_settings_are_off_by_default_and_checked_when_saved(database):
    with database.transaction() as session:
        assert auto_ack.read(session, "inbox-1")["enabled"] is False
        assert auto_ack.enabled_for(session, "inbox-1") is None
    bad = [({"enabled": True}, "needs html or text"), ({"enabled": "maybe", "text": "x"}, "not valid"),
           ({"enabled": True, "text": "{{ oops"}, "text"), ({"enabled": True, "text": "x", "period_hours": 0}, "valid"),
           ({"enabled": True, "text": "x", "subject": "Hi\r\nBcc: x@y.z"}, "subject"),
           ({"enabled": True, "text": "{{ ''.__class__.__mro__ }}"}, "unsafe"), ("not an object", "enabled")]
    for body, expected in bad:
        with database.transaction() as session, pytest.raises(HttpError) as error:
            auto_ack.write(session, "inbox-1", body, AGENT)
        assert expected in error.value.message or expected in str(error.value.details), (body, error.value.message)
    saved = enable(database, period_hours=48)
    assert saved["enabled"] is True and saved["period_hours"] == 48 and saved["updated_by"] == "agent-1"
    assert enable(database, period_hours=48)["enabled"] is True  # the same again: the same setting


def test_the_first_message_is_acknowledged_once_to_its_return_path_as_an_auto_reply(database, outbox):
    enable(database)
    email_id = ack(database, outbox, context())
    message = raw_of(database, email_id)
    assert message["To"].addresses[0].addr_spec == "ada-bounces@example.com"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["In-Reply-To"] == "<orig-1@example.com>" and message["Subject"] == "Re: Order #42 late"
    assert "Hi Ada, we got 'Order #42 late'." in message.get_body(("plain",)).get_content()
    assert ack(database, outbox, context()) is None  # the same conversation again (a redelivery): nothing
    assert ack(database, outbox, context("conv-2")) is None  # the same sender within the period: nothing
    with database.transaction() as session:
        seen = session.execute(select(AutoAcknowledged)).scalar_one()
        seen.last_sent_at = seen.last_sent_at - dt.timedelta(hours=25)  # the period has passed
    assert ack(database, outbox, context("conv-3")) is not None
    with database.transaction() as session:
        assert len(session.execute(select(Email)).scalars().all()) == 2


@pytest.mark.parametrize("flags, why", [
    ({"auto_submitted": True, "reasons": ["auto_submitted:auto-replied"]}, "automatic"),
    ({"auto_submitted": True, "reasons": ["auto_submitted:list"]}, "auto_submitted:list"),
    ({"auto_submitted": True, "reasons": ["auto_submitted:null_return_path"], "return_path": None}, "automatic"),
    ({"bounce": True}, "bounce"), ({"spam": True}, "spam"), ({"loop": True}, "loop"),
    ({"return_path": None}, "Return-Path"), ({"return_path": "not an address"}, "Return-Path"),
    ({"return_path": "ada@example.com\r\nBcc: x@y.z"}, "Return-Path"),
    ({"return_path": "SUPPORT@mailroom.test"}, "our own"), ({"return_path": "MAILER-DAEMON@example.com"}, "automated"),
])
def test_automatic_and_hostile_mail_is_never_acknowledged(database, outbox, flags, why):
    enable(database)
    assert why in (rules.refusal(message(**flags), {"support@mailroom.test"}) or "")
    assert ack(database, outbox, context(**flags)) is None


def test_our_own_sender_and_a_suppressed_address_get_nothing(database, outbox):
    enable(database)
    own = context()
    own["message"]["sender"] = {"name": None, "email": "support@mailroom.test"}
    assert ack(database, outbox, own) is None
    with database.transaction() as session:
        suppressions.suppress(session, "inbox-1", suppression.HardBounce("ada-bounces@example.com", "5.1.1", "x"),
                              "dsn", None)
    assert ack(database, outbox, context()) is None
