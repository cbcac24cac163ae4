"""Unread state (domain/read_marks.py) and search (domain/search.py): the rules as plain
functions, and the read models (queries.py) against an SQLite database with the service's own
use cases storing the mail (no RabbitMQ, no nameko container)."""

import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from conversations import handlers, queries
from conversations.domain import read_marks, search
from conversations.models import Message
from conversations.service import ConversationsService
from conversations.settings import Settings
from mailroom_shared.auth import Principal
from mailroom_shared.http import HttpError, NotFound, decode_cursor

OUTBOX = ConversationsService.outbox
MEMBER = Principal(user_id="agent-a", email="agent-a@team.example")
TEAMMATE = Principal(user_id="agent-b", email="agent-b@team.example")
ADMIN = Principal(user_id="admin", roles=frozenset({"account_access"}))
OUTSIDER = Principal(user_id="agent-x", team_ids=frozenset({"team-other"}))
T0 = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)


# --- the rules -----------------------------------------------------------------------------------

def test_unread_without_a_mark_when_anything_came_in():
    assert read_marks.is_unread(None, [T0]) is True
    assert read_marks.is_unread(None, []) is False  # only our own email: nothing to read


def test_read_up_to_the_newest_inbound_message_then_unread_again_on_a_newer_one():
    mark = read_marks.marked_read([T0, T0 + dt.timedelta(minutes=5)])
    assert mark == read_marks.Mark(read_up_to=T0 + dt.timedelta(minutes=5))
    assert read_marks.is_unread(mark, [T0, T0 + dt.timedelta(minutes=5)]) is False
    assert read_marks.is_unread(mark, [T0, T0 + dt.timedelta(minutes=5), T0 + dt.timedelta(minutes=6)]) is True


def test_marked_unread_stays_unread_until_read_and_read_with_nothing_in_waits_for_the_first():
    assert read_marks.is_unread(read_marks.marked_unread(), []) is True
    empty = read_marks.marked_read([])
    assert empty.read_up_to is None and read_marks.is_unread(empty, []) is False
    assert read_marks.is_unread(empty, [T0]) is True


@pytest.mark.parametrize(("typed", "pattern"), [
    ("refund", "%refund%"),
    ("100%", "%100\\%%"),
    ("a_b", "%a\\_b%"),
    ("C:\\temp", "%C:\\\\temp%"),
    ("it's \"quoted\"", "%it's \"quoted\"%"),
    ("\\%_", "%\\\\\\%\\_%"),
])
def test_a_query_becomes_a_literal_like_pattern(typed, pattern):
    assert search.like_pattern(typed) == pattern


def test_query_length_and_blanks():
    assert search.normalise_query(None) is None
    assert search.normalise_query("   ") is None
    assert search.normalise_query("  order 42 ") == "order 42"
    assert search.normalise_query("x" * search.MAX_QUERY_LENGTH) == "x" * search.MAX_QUERY_LENGTH
    with pytest.raises(search.QueryTooLong):
        search.normalise_query("x" * (search.MAX_QUERY_LENGTH + 1))
    with pytest.raises(HttpError) as error:
        queries.search_query("é" * (search.MAX_QUERY_LENGTH + 1))  # characters, not bytes
    assert error.value.status == 422 and error.value.code == "query_too_long"
    assert queries.search_query("é" * search.MAX_QUERY_LENGTH) == "é" * search.MAX_QUERY_LENGTH


# --- against a database ------------------------------------------------------------------------

def received(channel="billing@team.example", minutes=0, **extra):
    intake_id = str(uuid.uuid4())
    return {"intake_id": intake_id, "channel_address": channel, "via": "smtp",
            "message_id": f"<{uuid.uuid4()}@customer.example>", "subject": "Refund?",
            "sender": {"name": "Ada Lovelace", "email": "ada@customer.example"},
            "attributed_to": {"name": "Ada Lovelace", "email": "ada@customer.example"}, "to": [{"email": channel}],
            "text": "Hello, where is it?", "html": None, "attachments": [], "raw_url": f"/raw/{intake_id}",
            "received_at": (T0 + dt.timedelta(minutes=minutes)).isoformat(),
            "flags": {"spam": False, "loop": False, "auto_submitted": False, "bounce": False}, **extra}


@pytest.fixture
def inboxes(database):
    with database.transaction() as session:
        billing = handlers.create_inbox(session, OUTBOX, {
            "name": "Billing", "channels": [{"address": "billing@team.example"}],
            "members": [{"user_id": "agent-a", "email": "agent-a@team.example"},
                        {"user_id": "agent-b", "email": "agent-b@team.example"}],
            "access": {"visibility": "specific", "teams": []}})
        secret = handlers.create_inbox(session, OUTBOX, {
            "name": "Secret", "channels": [{"address": "secret@team.example"}],
            "members": [{"user_id": "agent-z", "email": "agent-z@team.example"}],
            "access": {"visibility": "specific", "teams": []}})
        return billing.id, secret.id


def receive(database, **kwargs):
    with database.transaction() as session:
        return handlers.receive_message(session, OUTBOX, received(**kwargs), Settings()).conversation.id


def page(database, principal, inbox_id, view="open", q=None, cursor=None, limit=50):
    with database.transaction() as session:
        return queries.conversations_page(session, principal, inbox_id, view, cursor, limit, q)


def unread_of(database, principal, inbox_id):
    return {item["id"]: item["unread"] for item in page(database, principal, inbox_id, "all")["items"]}


def test_unread_per_user_flips_on_new_inbound_mail_and_counts_follow(database, inboxes):
    billing, _ = inboxes
    first = receive(database)
    second = receive(database, subject="Other", minutes=1)
    assert unread_of(database, MEMBER, billing) == {first: True, second: True}
    with database.transaction() as session:
        queries.mark_read(session, MEMBER, first)
    assert unread_of(database, MEMBER, billing) == {first: False, second: True}
    assert unread_of(database, TEAMMATE, billing) == {first: True, second: True}  # B's own state
    with database.transaction() as session:
        counts = queries.view_counts(session, MEMBER, billing)
    assert counts["open"] == 2 and counts["unread_counts"]["open"] == 1 and counts["unread_counts"]["closed"] == 0
    with database.transaction() as session:
        assert queries.view_counts(session, TEAMMATE, billing)["unread_counts"]["open"] == 2

    # a reply from the customer makes it unread again; reading it twice is the same as once
    with database.transaction() as session:
        parent = session.execute(select(Message.rfc_message_id).where(Message.conversation_id == first)).scalar_one()
    assert receive(database, in_reply_to=[parent], minutes=2) == first
    assert unread_of(database, MEMBER, billing)[first] is True
    for _ in range(2):
        with database.transaction() as session:
            queries.mark_read(session, MEMBER, first)
    assert unread_of(database, MEMBER, billing)[first] is False


def test_marking_unread_and_who_may_mark(database, inboxes):
    billing, secret = inboxes
    conversation = receive(database)
    with database.transaction() as session:
        queries.mark_read(session, MEMBER, conversation)
        queries.mark_unread(session, MEMBER, conversation)
    assert unread_of(database, MEMBER, billing)[conversation] is True
    with database.transaction() as session:
        queries.mark_read(session, ADMIN, conversation)  # an admin who is no member: their own state
    assert unread_of(database, ADMIN, billing)[conversation] is False
    assert unread_of(database, MEMBER, billing)[conversation] is True
    with pytest.raises(NotFound), database.transaction() as session:
        queries.mark_read(session, OUTSIDER, conversation)  # may not view it: as if it did not exist
    with pytest.raises(NotFound), database.transaction() as session:
        queries.mark_unread(session, MEMBER, str(uuid.uuid4()))
    hidden = receive(database, channel="secret@team.example")
    with pytest.raises(NotFound), database.transaction() as session:
        queries.mark_read(session, MEMBER, hidden)
    assert secret


def test_search_by_subject_sender_and_text_literally_within_what_one_may_view(database, inboxes):
    billing, _ = inboxes
    refund = receive(database, subject="Refund for order 42")
    grace = receive(database, subject="Hello", sender={"name": "Grace Hopper", "email": "grace@navy.example"},
                    attributed_to={"name": "Grace Hopper", "email": "grace@navy.example"}, minutes=1)
    percent = receive(database, subject="Discount", text="I was promised 100% off_the price", minutes=2)
    hidden = receive(database, channel="secret@team.example", subject="Refund secret", minutes=3)

    def found(q, principal=MEMBER, inbox_id=billing):
        return {item["id"] for item in page(database, principal, inbox_id, "all", q=q)["items"]}

    assert found("REFUND") == {refund}
    assert found("grace@navy") == {grace} and found("hopper") == {grace}
    assert found("promised 100%") == {percent} and found("%") == {percent} and found("off_the") == {percent}
    assert found("_") == {percent}  # literal: not "any one character"
    assert found("100%%") == set() and found("o_f") == set()
    assert found("nothing like this") == set()
    assert found("Refund", inbox_id=None) == {refund}  # across the inboxes the member may view
    assert found("Refund", principal=ADMIN, inbox_id=None) == {refund, hidden}
    assert found("'; DROP TABLE conversations; --") == set()
    assert found("\\") == set() and found("\"") == set()
    assert found("Refund", inbox_id=billing) == {refund}
    with database.transaction() as session:  # the view still applies
        assert queries.conversations_page(session, MEMBER, billing, "closed", None, 50, "Refund")["items"] == []


def test_search_pages_with_the_cursor(database, inboxes):
    billing, _ = inboxes
    matching = {receive(database, subject=f"Invoice {n}", minutes=n) for n in range(5)}
    receive(database, subject="Unrelated", minutes=10)
    seen, cursor = [], None
    while True:
        result = page(database, MEMBER, billing, "open", q="invoice", cursor=cursor, limit=2)
        seen += [item["id"] for item in result["items"]]
        if not result["next_cursor"]:
            break
        cursor = decode_cursor(result["next_cursor"])
    assert len(seen) == 5 and set(seen) == matching
