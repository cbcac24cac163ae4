"""The Slack use cases on a migrated SQLite file: posts recorded once per connection and event,
one conversation's posts in order (the first starts the thread the next joins), a 429 holding
the connection back without using an attempt, a failure retried (never dropped), an attempt
that died mid-request looked for before posting again."""

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from mailroom_shared.auth import Principal
from mailroom_shared.db import Database
from mailroom_shared.events.envelope import build_envelope
from mailroom_shared.http import Forbidden, HttpError
from mailroom_shared.migrations import upgrade
from notifier import queries, slack_handlers
from notifier.settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[2] / "notifier" / "migrations"
ADMIN = Principal("admin-1", roles=frozenset({"super_admin"}))
SETTINGS = Settings(secret_key=Fernet.generate_key().decode(), lease_seconds=30)
BODY = {"inbox_id": "i-1", "channel_id": "C1", "bot_token": "xoxb-secret-token", "signing_secret": "signing-secret"}


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'notifier.db'}"
    upgrade("notifier", MIGRATIONS, url)
    database = Database(url)
    yield database
    database.dispose()


def connect(db, **more):
    with db.transaction() as session:
        return slack_handlers.create_connection(session, ADMIN, {**BODY, **more}, SETTINGS).id


def created(conversation_id="c-1"):
    return build_envelope("conversation_created", conversation_id, {
        "conversation_id": conversation_id, "inbox_id": "i-1", "subject": "Hi", "status": "open", "spam": False})


def record(db, envelope):
    with db.transaction() as session:
        return slack_handlers.record_posts(session, envelope, envelope["type"].split(".")[1], envelope["data"],
                                           SETTINGS)


def claim(db):
    with db.transaction() as session:
        return slack_handlers.claim_post(session, SETTINGS)


def outcome(db, claimed, ts=None, error=None, retry_after=None, in_doubt=False):
    with db.transaction() as session:
        return slack_handlers.record_post_outcome(session, claimed, ts, error, retry_after, in_doubt)


def make_due(db):
    with db.transaction() as session:
        session.execute(text("UPDATE slack_posts SET next_attempt_at = '2000-01-01 00:00:00'"))
        session.execute(text("UPDATE slack_connections SET rate_limited_until = NULL"))


def test_only_super_admins_connect_and_secrets_are_sealed(db):
    with db.transaction() as session, pytest.raises(Forbidden):
        slack_handlers.create_connection(session, Principal("member"), BODY, SETTINGS)
    connection_id = connect(db)
    with db.transaction() as session:
        stored = " ".join(session.execute(text(
            "SELECT bot_token_sealed || signing_secret_sealed FROM slack_connections")).scalars())
        assert "xoxb-secret-token" not in stored and "signing-secret" not in stored
        view = queries.get_slack_connection(session, connection_id)
        assert "xoxb-secret-token" not in str(view) and view["notifications"] == [
            "new_conversations", "new_messages", "assignments", "mentions"]
    with db.transaction() as session, pytest.raises(HttpError):
        slack_handlers.create_connection(session, ADMIN, BODY, SETTINGS)  # the same inbox and channel


def test_one_conversations_posts_go_out_in_order_in_its_thread(db):
    connect(db)
    first, second = created(), created()
    assert record(db, first) == 1 and record(db, first) == 0  # once per (connection, event)
    record(db, second)
    claimed = claim(db)
    assert claimed.thread_ts is None and not claimed.in_doubt and "xoxb" not in repr(claimed)
    assert claim(db) is None  # the second waits for the first: it must join the thread the first starts
    assert outcome(db, claimed, ts="111.000001") == "posted"
    following = claim(db)
    assert following.thread_ts == "111.000001"
    assert outcome(db, following, ts="111.000002") == "posted"


def test_a_429_holds_the_connection_back_and_uses_no_attempt(db):
    connect(db)
    record(db, created("c-1"))
    record(db, created("c-2"))
    claimed = claim(db)
    assert outcome(db, claimed, error="rate limited (429)", retry_after=30) == "rate_limited"
    assert claim(db) is None  # c-2 is due but the whole connection waits out Retry-After
    make_due(db)
    again = claim(db)
    assert again.post_id == claimed.post_id and again.attempt == 1 and not again.in_doubt


def test_failures_are_retried_and_an_unanswered_attempt_is_looked_for_first(db):
    connect(db)
    record(db, created())
    assert outcome(db, claim(db), error="slack: channel_not_found") == "retry"
    make_due(db)
    assert not claim(db).in_doubt  # Slack answered: it was not posted
    make_due(db)  # that worker died mid-request (the lease passed)
    after_crash = claim(db)
    assert after_crash.in_doubt and after_crash.attempt == 3
    assert outcome(db, after_crash, error="TimeoutError", in_doubt=True) == "retry"
    make_due(db)
    assert claim(db).in_doubt  # a timeout: it may have been posted
    with db.transaction() as session:
        [view] = queries.list_slack_connections(session)["items"]
        assert view["pending_posts"] == 1 and view["last_error"] == "TimeoutError"


def test_a_stale_outcome_changes_nothing(db):
    connect(db)
    record(db, created())
    first = claim(db)
    make_due(db)
    second = claim(db)
    assert outcome(db, first, ts="1.1") == "stale"
    assert outcome(db, second, ts="1.1") == "posted"
    with db.transaction() as session:
        assert session.execute(text("SELECT state FROM slack_posts")).scalar_one() == "posted"
        assert session.execute(text("SELECT thread_ts FROM slack_threads")).scalar_one() == "1.1"


def test_deleting_a_connection_drops_its_posts_and_threads(db):
    connection_id = connect(db)
    record(db, created())
    outcome(db, claim(db), ts="1.1")
    record(db, created())
    with db.transaction() as session:
        slack_handlers.delete_connection(session, ADMIN, connection_id)
    with db.transaction() as session:
        assert session.execute(text("SELECT count(*) FROM slack_posts")).scalar_one() == 0
        assert session.execute(text("SELECT count(*) FROM slack_threads")).scalar_one() == 0
