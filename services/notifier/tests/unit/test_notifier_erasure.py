"""The notifier's part of a contact's erasure (erasure.py, issue #17) on a migrated SQLite file:
the delivery log and Slack posts of the person's events are redacted, what was not sent yet is
dropped (never sent, not sent again on request), another customer's deliveries are untouched,
a late copy of an event produced before the erasure is neither delivered nor posted while one
produced after it is, hostile keys erase nothing, and a redelivered erasure is confirmed again."""

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from mailroom_shared.auth import Principal
from mailroom_shared.db import Database
from mailroom_shared.events.envelope import build_envelope
from mailroom_shared.http import Conflict
from mailroom_shared.migrations import upgrade
from notifier import erasure, handlers
from notifier.models import ErasedKey, SlackConnection, SlackPost, WebhookDelivery, outbox
from notifier.service import NotifierService
from notifier.settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[2] / "notifier" / "migrations"
ADMIN = Principal("admin-1", roles=frozenset({"super_admin"}))
SETTINGS = Settings(secret_key=Fernet.generate_key().decode(), retry_schedule=(5.0, 60.0))
OUTBOX = NotifierService.outbox


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'notifier.db'}"
    upgrade("notifier", MIGRATIONS, url)
    database = Database(url)
    with database.transaction() as session:
        handlers.create_subscription(session, ADMIN, {"url": "https://hooks.example.com/in", "events": ["*"]},
                                     SETTINGS, lambda url: None)
        session.add(SlackConnection(id="slack-1", inbox_id="inbox-1", channel_id="C1", notifications=[
            "new_conversations", "new_messages", "assignments", "mentions"], bot_token_sealed="x",
            signing_secret_sealed="y", created_by="admin-1"))
    yield database
    database.dispose()


def conversation_created(conversation_id, email, name, subject):
    return "conversation_created", build_envelope("conversation_created", conversation_id, {
        "conversation_id": conversation_id, "inbox_id": "inbox-1", "subject": subject, "contact_email": email,
        "contact_name": name, "status": "open", "spam": False})


def comment(conversation_id, body):
    return "comment_added", build_envelope("comment_added", conversation_id, {
        "conversation_id": conversation_id, "inbox_id": "inbox-1", "comment_id": str(uuid.uuid4()),
        "author_user_id": "agent-1", "body": body, "mentions": []})


def contact_created(contact_id, email):
    return "contact_created", build_envelope("contact_created", contact_id, {
        "contact_id": contact_id, "name": "Ada Lovelace", "emails": [email], "created_from": "x"})


def record(db, event):
    event_type, envelope = event
    with db.transaction() as session:
        handlers.record_event(session, envelope, event_type, envelope["data"])
        from notifier import slack_handlers
        slack_handlers.record_posts(session, envelope, event_type, envelope["data"], SETTINGS)
    return envelope


def deliveries(db):
    with db.transaction() as session:
        return {d.event_id: (d.state, d.body) for d in session.execute(select(WebhookDelivery)).scalars()}


def posts(db):
    with db.transaction() as session:
        return {p.event_id: (p.state, p.text) for p in session.execute(select(SlackPost)).scalars()}


ERASE = {"erasure_id": "e-1", "contact_id": "c-ada", "emails": ["Ada@Example.com"], "identities": [],
         "intake_ids": []}


def test_the_persons_deliveries_and_posts_are_redacted_or_dropped_and_nobody_elses(db):
    sent = record(db, conversation_created("conv-ada", "ada@example.com", "Ada Lovelace", "My secret contract"))
    about_her = record(db, comment("conv-ada", "she called about contract 4711"))  # names her only by topic
    her_contact = record(db, contact_created("c-ada", "ada@example.com"))
    second = record(db, conversation_created("conv-ada-2", "ADA@example.com", None, "Lovelace again"))
    bobs = record(db, conversation_created("conv-bob", "bob@example.com", "Bob", "Bob's order"))
    with db.transaction() as session:  # the first one went out already, the rest are waiting
        session.get(WebhookDelivery, session.execute(select(WebhookDelivery.id).where(
            WebhookDelivery.event_id == sent["id"])).scalar_one()).state = "delivered"
        for post in session.execute(select(SlackPost).where(SlackPost.event_id == sent["id"])).scalars():
            post.state, post.ts = "posted", "1.0"
    with db.transaction() as session:
        erased = erasure.erase_contact(session, OUTBOX, ERASE, "2026-12-07T02:00:00+00:00")
    assert erased["deliveries_redacted"] == 1 and erased["deliveries_dropped"] == 3
    assert erased["slack_posts_redacted"] == 1 and erased["slack_posts_dropped"] == 1
    assert posts(db)[second["id"]] == ("erased", "[erased]")
    log = deliveries(db)
    assert log[sent["id"]][0] == "delivered"
    assert {log[e["id"]][0] for e in (about_her, her_contact, second)} == {"erased"}
    for event in (sent, about_her, her_contact, second):
        body = json.loads(log[event["id"]][1])
        assert body["data"] == {"erased": True} and body["id"] == event["id"] and body["type"] == event["type"]
    text = json.dumps(log).lower() + json.dumps(posts(db)).lower()
    for trace in ("ada@", "lovelace", "secret contract", "4711"):
        assert trace not in text, trace
    assert log[bobs["id"]][0] == "pending" and "Bob's order" in log[bobs["id"]][1]  # untouched
    assert posts(db)[bobs["id"]] == ("pending", posts(db)[bobs["id"]][1]) and "Bob" in posts(db)[bobs["id"]][1]
    # an erased delivery is not sent again on request
    with db.transaction() as session:
        delivery = session.execute(select(WebhookDelivery).where(WebhookDelivery.event_id == her_contact["id"])
                                   ).scalar_one()
        with pytest.raises(Conflict):
            handlers.redeliver(session, ADMIN, delivery.subscription_id, delivery.id)
    # confirmed with counts only; redelivered: confirmed again, nothing more to drop
    with db.transaction() as session:
        again = erasure.erase_contact(session, OUTBOX, ERASE, "2026-12-07T02:00:00+00:00")
        assert again["deliveries_dropped"] == 0 and again["slack_posts_dropped"] == 0
        confirmations = [row.envelope["data"] for row in session.execute(select(outbox.c.envelope).where(
            outbox.c.event_type == "contact_notifications_erased"))]
    assert confirmations[0] == {"erasure_id": "e-1", "contact_id": "c-ada", "erased": erased}
    assert "ada@" not in json.dumps(confirmations).lower()


def test_a_late_copy_is_not_delivered_and_new_mail_after_the_erasure_is(db):
    before = contact_created("c-ada", "ada@example.com")  # produced now, reaches the notifier late
    with db.transaction() as session:
        erasure.erase_contact(session, OUTBOX, ERASE, (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)).isoformat())
        assert erasure.is_late_copy(session, before[1], before[1]["data"])
        late_message = conversation_created("conv-ada", "ADA@example.com", None, "hi")[1]
        assert erasure.is_late_copy(session, late_message, late_message["data"])
        bobs = conversation_created("conv-bob", "bob@example.com", None, "hi")[1]
        assert not erasure.is_late_copy(session, bobs, bobs["data"])
        # produced after the erasure: a new contact of that address, delivered as usual
        later = dict(before[1], time=(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).isoformat())
        assert not erasure.is_late_copy(session, later, later["data"])
        # hostile or odd data: nothing to match, never an error
        for data in (None, [], "ada@example.com", {"x": ["%", "_", "x" * 100_000]}, {"a": [[[[{}]]]]}):
            assert erasure.is_late_copy(session, {"time": "garbage"}, data) in (True, False)
        # only fingerprints are kept, never the address itself
        kept = [k.fingerprint for k in session.execute(select(ErasedKey)).scalars()]
    assert kept and all(len(k) == 64 and "@" not in k for k in kept)


def test_hostile_keys_erase_nothing(db):
    record(db, conversation_created("conv-bob", "bob@example.com", "Bob", "Bob's order"))
    with db.transaction() as session:
        erased = erasure.erase_contact(session, OUTBOX, {
            "erasure_id": "e-2", "contact_id": "", "emails": ["%", "_@example.com", "not an address", 7],
            "identities": [{"kind": "phone", "value": "%"}, "junk"], "intake_ids": "nope"}, None)
    assert erased["deliveries_dropped"] == 0 and erased["slack_posts_dropped"] == 0
    assert {state for state, _ in deliveries(db).values()} == {"pending"}
