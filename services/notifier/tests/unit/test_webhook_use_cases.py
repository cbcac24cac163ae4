"""The webhook use cases on a migrated SQLite file: super admins only, the secret sealed and shown
once, one delivery per (subscription, event), and the worker's claim/outcome steps (retry with
backoff, 4xx failed at once, attempts used up, redelivery)."""

import datetime as dt
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from mailroom_shared import safe_http
from mailroom_shared.auth import Principal
from mailroom_shared.db import Database
from mailroom_shared.events.envelope import build_envelope
from mailroom_shared.http import Forbidden, HttpError, ServiceUnavailable
from mailroom_shared.migrations import upgrade
from notifier import handlers, queries
from notifier.models import WebhookAttempt, WebhookDelivery
from notifier.settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[2] / "notifier" / "migrations"
ADMIN = Principal("admin-1", roles=frozenset({"super_admin"}))
MEMBER = Principal("member-1", team_ids=frozenset({"t1"}))
SETTINGS = Settings(secret_key=Fernet.generate_key().decode(), retry_schedule=(5.0, 60.0))


def allow(url):
    return None


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'notifier.db'}"
    upgrade("notifier", MIGRATIONS, url)
    database = Database(url)
    yield database
    database.dispose()


def create(db, body=None, settings=SETTINGS):
    with db.transaction() as session:
        subscription, secret = handlers.create_subscription(
            session, ADMIN, body or {"url": "https://hooks.example.com/in", "events": ["conversation_created"]},
            settings, allow)
        return subscription.id, secret


def envelope(event_type="conversation_created", inbox_id="inbox-1"):
    return build_envelope(event_type, "c-1", {
        "conversation_id": "c-1", "inbox_id": inbox_id, "subject": "Hi", "contact_email": "a@example.org",
        "status": "open", "spam": False})


def record(db, env):
    with db.transaction() as session:
        return handlers.record_event(session, env, env["type"].split(".")[1], env["data"])


def test_only_super_admins_manage_webhooks(db):
    with db.transaction() as session, pytest.raises(Forbidden):
        handlers.create_subscription(session, MEMBER, {"url": "https://x.example", "events": ["*"]}, SETTINGS, allow)


def test_the_secret_is_sealed_at_rest_and_shown_only_on_creation(db):
    webhook_id, secret = create(db)
    assert secret.startswith("whsec_")
    with db.transaction() as session:
        stored = session.execute(text("SELECT secret_sealed FROM webhook_subscriptions")).scalar_one()
        assert secret not in stored and secret[6:] not in stored
        view = queries.get_subscription(session, webhook_id)
        assert "secret" not in view and "secret_sealed" not in view
        assert secret not in str(queries.list_subscriptions(session))


def test_without_a_key_no_webhook_is_created(db):
    with db.transaction() as session, pytest.raises(ServiceUnavailable, match="NOTIFIER_SECRET_KEY"):
        handlers.create_subscription(session, ADMIN, {"url": "https://x.example", "events": ["*"]},
                                     Settings(), allow)


def test_bad_bodies_and_refused_targets_are_400(db):
    for body in ({"url": "http://x.example", "events": ["*"]}, {"url": "https://x.example", "events": ["nope"]},
                 {"url": "https://x.example"}, {"events": ["*"]}):
        with db.transaction() as session, pytest.raises(HttpError):
            handlers.create_subscription(session, ADMIN, body, SETTINGS, allow)

    def refuse(url):
        raise safe_http.TargetRefused("x.example resolves to a private address (10.0.0.1)")

    with db.transaction() as session, pytest.raises(HttpError, match="private"):
        handlers.create_subscription(session, ADMIN, {"url": "https://x.example", "events": ["*"]}, SETTINGS, refuse)


def test_one_delivery_per_matching_subscription_and_event(db):
    wanted, _ = create(db)
    create(db, {"url": "https://b.example/", "events": ["message_added"]})  # another event type
    create(db, {"url": "https://c.example/", "events": ["*"], "inbox_ids": ["inbox-2"]})  # another inbox
    everything, _ = create(db, {"url": "https://d.example/", "events": ["*"]})
    env = envelope()
    assert record(db, env) == 2
    assert record(db, env) == 0  # the same event again: nothing new
    with db.transaction() as session:
        rows = session.execute(select(WebhookDelivery)).scalars().all()
        assert sorted(r.subscription_id for r in rows) == sorted([wanted, everything])
        assert {r.event_id for r in rows} == {env["id"]}


def test_disabled_subscriptions_get_nothing(db):
    webhook_id, _ = create(db)
    with db.transaction() as session:
        handlers.update_subscription(session, ADMIN, webhook_id, {"enabled": False}, SETTINGS, allow)
    assert record(db, envelope()) == 0


def claim(db, settings=SETTINGS):
    with db.transaction() as session:
        return handlers.claim_next(session, settings)


def outcome(db, claimed, status, error=None, settings=SETTINGS):
    with db.transaction() as session:
        return handlers.record_outcome(session, claimed, status, error, 0.01, settings,
                                       dt.datetime.now(dt.UTC))


def make_due(db):
    with db.transaction() as session:
        session.execute(text("UPDATE webhook_deliveries SET next_attempt_at = '2000-01-01 00:00:00'"))


def test_a_500_is_retried_after_the_backoff_then_delivered(db):
    webhook_id, secret = create(db)
    env = envelope()
    record(db, env)
    first = claim(db)
    assert first.attempt == 1 and first.secrets == (secret,) and first.event_id == env["id"]
    assert secret not in repr(first)
    assert claim(db) is None  # leased
    assert outcome(db, first, 500, "HTTP 500") == "retry"
    assert claim(db) is None  # not due yet (about 5 s)
    with db.transaction() as session:
        delivery = session.execute(select(WebhookDelivery)).scalar_one()
        wait = (delivery.next_attempt_at.replace(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)).total_seconds()
        assert 3.5 < wait <= 6.1
    make_due(db)
    second = claim(db)
    assert second.attempt == 2 and second.body == first.body
    assert outcome(db, second, 204) == "delivered"
    with db.transaction() as session:
        page = queries.list_deliveries(session, webhook_id, 50, None)
    [item] = page["items"]
    assert item["state"] == "delivered" and item["attempts"] == 2 and item["next_attempt_at"] is None
    assert [(a["attempt"], a["status"], a["outcome"]) for a in item["log"]] == [
        (1, 500, "retry"), (2, 204, "delivered")]


def test_a_410_fails_at_once(db):
    create(db)
    record(db, envelope())
    assert outcome(db, claim(db), 410, "HTTP 410") == "failed"
    make_due(db)
    assert claim(db) is None


class RecordingOutbox:
    def __init__(self):
        self.events = []

    def record(self, session, event_type, subject, data):
        self.events.append((event_type, subject, data))


def test_timeouts_are_retried_until_the_schedule_ends_then_the_subscription_is_disabled(db):
    webhook_id, _ = create(db)
    record(db, envelope())
    outbox = RecordingOutbox()
    for expected in ("retry", "retry", "failed"):  # a schedule of two retries: three attempts
        make_due(db)
        with db.transaction() as session:
            assert handlers.record_outcome(session, claim(db), None, "timed out", 0.01, SETTINGS,
                                           dt.datetime.now(dt.UTC), outbox) == expected
    with db.transaction() as session:
        delivery = session.execute(select(WebhookDelivery)).scalar_one()
        assert delivery.state == "failed" and delivery.attempts == 3 and delivery.last_error == "timed out"
        assert queries.get_subscription(session, webhook_id)["enabled"] is False
    [(event_type, subject, data)] = outbox.events
    assert (event_type, subject) == ("webhook_disabled", webhook_id)
    assert data["delivery_id"] == delivery.id and data["attempts"] == 3 and data["last_status"] is None
    assert record(db, envelope()) == 0  # disabled: the next events are not recorded for it
    with db.transaction() as session:  # enabled again by a super admin: it receives again
        handlers.update_subscription(session, ADMIN, webhook_id, {"enabled": True}, SETTINGS, allow)
    assert record(db, envelope()) == 1


def test_a_4xx_fails_the_delivery_but_does_not_disable_the_subscription(db):
    webhook_id, _ = create(db)
    record(db, envelope())
    outbox = RecordingOutbox()
    with db.transaction() as session:
        handlers.record_outcome(session, claim(db), 400, "HTTP 400", 0.01, SETTINGS, dt.datetime.now(dt.UTC), outbox)
        assert queries.get_subscription(session, webhook_id)["enabled"] is True
    assert outbox.events == []


def test_each_subscription_numbers_the_events_of_each_conversation_in_order(db):
    import json

    first, _ = create(db, {"url": "https://a.example/", "events": ["*"]})
    contact = {**envelope(), "type": "mailroom.contact_created.v1", "data": {"contact_id": "k-1"}}
    record(db, contact)
    envelopes = [envelope(), envelope(), {**envelope(), "type": "mailroom.message_added.v1"}]
    record(db, envelopes[0])
    second, _ = create(db, {"url": "https://b.example/", "events": ["*"]})  # joins mid-conversation
    record(db, envelopes[1])
    record(db, envelopes[1])  # redelivered: takes no number
    record(db, envelopes[2])
    other = envelope()
    other["data"] = {**other["data"], "conversation_id": "c-2"}
    record(db, other)
    with db.transaction() as session:
        rows = session.execute(select(WebhookDelivery).order_by(WebhookDelivery.created_at)).scalars().all()
    numbered = {(r.subscription_id, r.event_id): json.loads(r.body).get("sequence") for r in rows}
    ids = [e["id"] for e in envelopes]
    assert [numbered[(first, i)] for i in ids] == ["00000000000000000001", "00000000000000000002",
                                                   "00000000000000000003"]
    assert [numbered[(second, i)] for i in ids[1:]] == ["00000000000000000001", "00000000000000000002"]
    assert numbered[(first, other["id"])] == numbered[(second, other["id"])] == "00000000000000000001"
    assert [v for (s, _), v in numbered.items() if v is None] == [None]  # contact_created: no conversation
    body = json.loads(next(r.body for r in rows if r.event_id == ids[0]))
    assert {k: v for k, v in body.items() if k != "sequence"} == envelopes[0]  # otherwise the envelope as is


def test_a_worker_dying_mid_request_leaves_it_to_be_claimed_again_and_the_budget_holds(db):
    create(db)
    record(db, envelope())
    for attempt in (1, 2, 3):
        make_due(db)  # the lease passed
        assert claim(db).attempt == attempt  # and the worker died each time
    make_due(db)
    assert claim(db).attempt == 0  # failed instead of a fourth try
    with db.transaction() as session:
        assert session.execute(select(WebhookDelivery.state)).scalar_one() == "failed"


def test_redeliver_sends_a_failed_delivery_again_and_keeps_the_log(db):
    webhook_id, _ = create(db)
    record(db, envelope())
    outcome(db, claim(db), 410, "HTTP 410")
    with db.transaction() as session:
        delivery_id = session.execute(select(WebhookDelivery.id)).scalar_one()
        with pytest.raises(Forbidden):
            handlers.redeliver(session, MEMBER, webhook_id, delivery_id)
        handlers.redeliver(session, ADMIN, webhook_id, delivery_id)
    again = claim(db)
    assert again.attempt == 1
    assert outcome(db, again, 200) == "delivered"
    with db.transaction() as session:
        assert session.execute(select(WebhookAttempt)).scalars().all().__len__() == 2
        assert queries.delivery(session, webhook_id, delivery_id)["state"] == "delivered"


def test_rotation_and_deletion(db):
    webhook_id, secret = create(db)
    record(db, envelope())
    with db.transaction() as session:
        _, rotated = handlers.rotate_secret(session, ADMIN, webhook_id, SETTINGS)
    assert rotated != secret and claim(db).secrets == (rotated, secret)  # both sign for 24 h
    with db.transaction() as session:
        session.execute(text("UPDATE webhook_subscriptions SET previous_secret_expires_at = '2000-01-01 00:00:00'"))
    make_due(db)
    assert claim(db).secrets == (rotated,)
    with db.transaction() as session:
        handlers.delete_subscription(session, ADMIN, webhook_id)
    with db.transaction() as session:
        assert session.execute(text("SELECT count(*) FROM webhook_deliveries")).scalar_one() == 0
