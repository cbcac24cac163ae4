"""The conversations use cases (handlers.py) and read models (queries.py), called directly
against an SQLite database: no RabbitMQ, no nameko container."""

import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from conversations import handlers, queries
from conversations.models import Conversation, KnownUser, Message, outbox
from conversations.service import ConversationsService
from conversations.settings import Settings
from mailroom_shared.auth import Principal
from mailroom_shared.db import aware
from mailroom_shared.http import Conflict, Forbidden, HttpError, NotFound

OUTBOX = ConversationsService.outbox
ADMIN = Principal(user_id="admin", roles=frozenset({"account_access"}))
MEMBER = Principal(user_id="agent-a", email="agent-a@team.example")
OUTSIDER = Principal(user_id="agent-x", team_ids=frozenset({"team-other"}))


def recorded_events(session):
    return [row.event_type for row in session.execute(select(outbox).order_by(outbox.c.id))]


def recorded_events_of(database):
    with database.transaction() as session:
        return recorded_events(session)


def received(channel="billing@team.example", **extra):
    intake_id = str(uuid.uuid4())
    return {"intake_id": intake_id, "channel_address": channel, "via": "smtp",
            "message_id": f"<{uuid.uuid4()}@customer.example>", "subject": "Refund?",
            "sender": {"name": "Ada", "email": "ada@customer.example"},
            "attributed_to": {"name": "Ada", "email": "ada@customer.example"}, "to": [{"email": channel}],
            "text": "Hello,\n\n  where is it?", "html": None, "attachments": [], "raw_url": f"/raw/{intake_id}",
            "received_at": "2026-11-25T10:00:00+00:00",
            "flags": {"spam": False, "loop": False, "auto_submitted": False, "bounce": False}, **extra}


@pytest.fixture
def inbox_id(database):
    with database.transaction() as session:
        inbox = handlers.create_inbox(session, OUTBOX, {
            "name": "Billing", "channels": [{"address": "Billing@Team.example"}],
            "members": [{"user_id": "agent-a", "email": "agent-a@team.example"}],
            "access": {"visibility": "specific", "teams": ["team-t"]}})
        return inbox.id


def test_a_conversation_the_transaction_has_loaded_reads_the_message_that_reopened_it(database, inbox_id):
    """A group commit handles several messages in one transaction, and a message's conversation
    is counted (and reopened) by an UPDATE of the row: a copy of that conversation the session
    loaded before (here closed in the same transaction) reads what the UPDATE wrote."""
    with database.transaction() as session:
        first = handlers.receive_message(session, OUTBOX, received(), Settings())
        loaded = session.get(Conversation, first.conversation.id)
        loaded.status, loaded.closed_at = "closed", dt.datetime(2026, 11, 25, 11, tzinfo=dt.UTC)
        reply = handlers.receive_message(session, OUTBOX, received(
            in_reply_to=[first.message.rfc_message_id], text="Any news?", received_at="2026-11-25T12:00:00+00:00"),
            Settings())
        assert reply.placement.action == "reopen" and reply.conversation.id == loaded.id
        assert (loaded.status, loaded.closed_at, loaded.message_count, loaded.snippet) == ("open", None, 2, "Any news?")
        assert aware(loaded.last_message_at) == dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
        # an older message (a late one) counts, and leaves the latest's snippet and time
        handlers.receive_message(session, OUTBOX, received(
            in_reply_to=[first.message.rfc_message_id], text="Earlier", received_at="2026-11-25T10:30:00+00:00"),
            Settings())
        assert (loaded.message_count, loaded.snippet) == (3, "Any news?")
        assert aware(loaded.last_message_at) == dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
    assert recorded_events_of(database)[-4:] == ["message_added", "conversation_reopened", "message_added",
                                                 "message_added"]


def test_an_inbound_message_starts_a_conversation_and_a_reply_joins_it(database, inbox_id):
    with database.transaction() as session:
        first = handlers.receive_message(session, OUTBOX, received(), Settings())
        assert first.placement.action == "new" and first.conversation.snippet == "Hello, where is it?"
        reply = handlers.receive_message(session, OUTBOX, received(in_reply_to=[first.message.rfc_message_id]),
                                         Settings())
        assert reply.conversation.id == first.conversation.id and reply.conversation.message_count == 2
        again = handlers.receive_message(session, OUTBOX, received(message_id=first.message.rfc_message_id),
                                         Settings())
        assert again.placement is None  # the same Message-ID twice: stored once
        assert recorded_events(session) == ["inbox_updated", "conversation_created", "message_added",
                                            "message_added"]


def test_only_members_act_admins_may_only_view_and_others_get_not_found(database, inbox_id):
    with database.transaction() as session:
        conversation_id = handlers.receive_message(session, OUTBOX, received(), Settings()).conversation.id
    with database.transaction() as session:
        with pytest.raises(NotFound, match=f"no conversation {conversation_id}"):
            handlers.close_conversation(session, OUTBOX, OUTSIDER, conversation_id)
        with pytest.raises(Forbidden, match="only its members can act") as refused:
            handlers.close_conversation(session, OUTBOX, ADMIN, conversation_id)
        assert refused.value.details == {"inbox_id": inbox_id, "action": "close"}
        assert handlers.close_conversation(session, OUTBOX, MEMBER, conversation_id).status == "closed"
        assert queries.viewable_conversation(session, ADMIN, conversation_id)[1].id == inbox_id
        with pytest.raises(NotFound):
            queries.viewable_inbox(session, OUTSIDER, inbox_id)


def test_check_access_answers_what_the_http_api_would(database, inbox_id):
    with database.transaction() as session:
        assert queries.access_answer(session, MEMBER, "reply", inbox_id=inbox_id)["allowed"] is True
        assert queries.access_answer(session, ADMIN, "view", inbox_id=inbox_id)["allowed"] is True
        assert queries.access_answer(session, ADMIN, "reply", inbox_id=inbox_id)["status"] == 403
        assert queries.access_answer(session, OUTSIDER, "view", inbox_id=inbox_id) == {
            "allowed": False, "status": 404, "code": "not_found", "message": f"no inbox {inbox_id}"}


def test_assignment_is_to_members_and_a_compare_and_set(database, inbox_id):
    with database.transaction() as session:
        handlers.remember_user(session, Principal(user_id="agent-t", team_ids=frozenset({"team-t"})))
        conversation_id = handlers.receive_message(session, OUTBOX, received(), Settings()).conversation.id
    with database.transaction() as session:
        assigned = handlers.assign(session, OUTBOX, MEMBER, conversation_id, "agent-t", expected=None)
        assert assigned.assignee_user_id == "agent-t"  # a known user of one of the inbox's teams
        with pytest.raises(Conflict) as lost:
            handlers.assign(session, OUTBOX, MEMBER, conversation_id, "agent-a", expected=None)
        assert lost.value.details == {"assignee_user_id": "agent-t"}
        with pytest.raises(HttpError, match="not a member"):
            handlers.assign(session, OUTBOX, MEMBER, conversation_id, "agent-x")


def test_users_are_remembered_as_their_latest_token_describes_them(database):
    with database.transaction() as session:
        handlers.remember_user(session, Principal(user_id="u1", email="u1@x.example"))
    with database.transaction() as session:
        handlers.remember_user(session, Principal(user_id="u1", email="u1@x.example", team_ids=frozenset({"t"})))
    with database.transaction() as session:
        assert session.get(KnownUser, "u1").team_ids == ["t"]


def test_inbox_writes_answer_400_and_409(database, inbox_id):
    with pytest.raises(Conflict, match="already a channel"), database.transaction() as session:
        handlers.create_inbox(session, OUTBOX, {"name": "Other", "channels": [{"address": "billing@team.example"}]})
    with pytest.raises(HttpError, match="only one channel can be primary"), database.transaction() as session:
        handlers.update_inbox(session, OUTBOX, inbox_id, {"channels": [
            {"address": "a@team.example", "primary": True}, {"address": "b@team.example", "primary": True}]})
    with pytest.raises(NotFound, match="no inbox nope"), database.transaction() as session:
        handlers.update_inbox(session, OUTBOX, "nope", {"name": "X"})


def test_seeding_announces_an_inbox_once_until_it_changes(database):
    entry = {"name": "Sales Team", "channels": [{"address": "sales@team.example"}], "members": []}
    with database.transaction() as session:
        [(inbox, announced)] = handlers.seed_inboxes(session, OUTBOX, [entry])
        assert inbox.key == "sales-team" and announced
    with database.transaction() as session:
        assert handlers.seed_inboxes(session, OUTBOX, [entry])[0][1] is False
        assert recorded_events(session).count("inbox_updated") == 1
        renamed = handlers.seed_inboxes(session, OUTBOX, [{**entry, "key": "sales-team", "name": "Sales"}])
        assert renamed[0][0].id == inbox.id and renamed[0][1] is True


def test_our_email_joins_its_conversation_and_a_later_delivery_state_stays(database, inbox_id):
    with database.transaction() as session:
        conversation = handlers.receive_message(session, OUTBOX, received(), Settings()).conversation
    email = {"email_id": str(uuid.uuid4()), "inbox_id": inbox_id, "conversation_id": conversation.id,
             "rfc_message_id": "<ours@team.example>", "from_": {"email": "billing@team.example"},
             "to": [{"email": "ada@customer.example"}], "subject": "Re: Refund?", "text": "On its way",
             "queued_at": "2026-11-25T11:00:00+00:00"}
    with database.transaction() as session:
        assert handlers.store_outbound_email(session, OUTBOX, email, "queued", {}).id == email["email_id"]
        loaded = session.get(Message, email["email_id"])  # the session's copy reads each later state
        assert loaded.flags["delivery"] == {"state": "queued"}
        assert handlers.store_outbound_email(session, OUTBOX, email, "sent", {"smtp_queue_id": "Q1"}) is None
        assert loaded.flags["delivery"] == {"state": "sent", "smtp_queue_id": "Q1"}
        handlers.record_delivery_state(session, email, "bounced", {"reason": "no such user"})
        handlers.record_delivery_state(session, email, "deferred", {"reason": "try later"})  # arrived late
        message = session.get(Message, email["email_id"])
        assert message.flags["delivery"] == {"state": "bounced", "reason": "no such user"}
        assert message.flags["reasons"] == ["delivery:bounced: no such user"]
        page = queries.sent_page(session, inbox_id, None, 50, MEMBER)
        assert [item["id"] for item in page["items"]] == [email["email_id"]]
        context = queries.reply_context(session, conversation.id, None, include_thread=True)
        assert context["reply_address"] == f"billing+{conversation.reply_token}@team.example"
        assert [m["direction"] for m in context["thread"]] == ["in", "out"]
        assert context["message"]["direction"] == "in"  # the latest inbound message is the one replied to


def test_the_reply_context_rpc_decides_who_may_send_from_the_current_members_and_teams(database, inbox_id):
    """get_reply_context (queries.reply_context_for, Core SQL since issue #16): members by user id
    or team act; an admin who only views gets the reason; anyone else, and a member removed a
    moment ago, gets None (not found); another service (no principal) gets the context."""
    with database.transaction() as session:
        conversation_id = handlers.receive_message(session, OUTBOX, received(), Settings()).conversation.id
    by_team = Principal(user_id="agent-t", team_ids=frozenset({"team-t", "team-z"}))
    with database.transaction() as session:
        for caller in (MEMBER, by_team, None):
            context = queries.reply_context_for(session, conversation_id, None, False, caller and caller.as_dict())
            assert context["conversation"]["id"] == conversation_id and context["inbox"]["name"] == "Billing"
            assert context["message"]["direction"] == "in"
        assert "only its members can act" in queries.reply_context_for(
            session, conversation_id, None, False, ADMIN.as_dict())["forbidden"]
        assert queries.reply_context_for(session, conversation_id, None, False, OUTSIDER.as_dict()) is None
        assert queries.reply_context_for(session, str(uuid.uuid4()), None, False, None) is None
        handlers.update_inbox(session, OUTBOX, inbox_id, {"members": [], "access": {"teams": []}})
    with database.transaction() as session:  # no longer a member, nor in a team of the inbox: refused at once
        assert queries.reply_context_for(session, conversation_id, None, False, MEMBER.as_dict()) is None
        assert queries.reply_context_for(session, conversation_id, None, False, by_team.as_dict()) is None
