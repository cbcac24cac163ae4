"""One email to several team inboxes is one conversation (issue #17, docs/architecture.md): the
copy rule (domain/placement.is_copy) and the use cases against SQLite — sharing, duplicates, the
spoofed Message-ID, access through any of the conversation's inboxes, lists, moves."""

import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from conversations import handlers, queries
from conversations.domain.placement import Copy, is_copy, untagged
from conversations.models import ConversationInbox, Message, outbox
from conversations.service import ConversationsService
from conversations.settings import Settings
from mailroom_shared.auth import Principal
from mailroom_shared.http import Forbidden, HttpError, NotFound

OUTBOX = ConversationsService.outbox
A, B, C = "billing@team.example", "sales@team.example", "legal@team.example"
MEMBER_A = Principal(user_id="agent-a", email="agent-a@team.example")
MEMBER_B = Principal(user_id="agent-b", email="agent-b@team.example")
ADMIN = Principal(user_id="admin", roles=frozenset({"account_access"}))
OUTSIDER = Principal(user_id="agent-x")
T0 = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)


def copy(**changes) -> Copy:
    values = {"rfc_message_id": "m1@customer.example", "sender": "ada@customer.example", "subject": "Refund?",
              "text": "Hello", "recipients": frozenset({A, B}), "inbox_addresses": frozenset({A}),
              "received_at": T0, "spam": False}
    return Copy(**{**values, **changes})


def test_the_copy_rule():
    stored = copy()
    incoming = copy(inbox_addresses=frozenset({B}), received_at=T0 + dt.timedelta(minutes=3), text=" Hello\n")
    assert is_copy(incoming, stored)
    assert not is_copy(copy(inbox_addresses=frozenset({B}), sender="mallory@evil.example"), stored)
    assert not is_copy(copy(inbox_addresses=frozenset({B}), sender=None), stored)
    assert not is_copy(copy(inbox_addresses=frozenset({B}), rfc_message_id="other@x"), stored)
    assert not is_copy(copy(inbox_addresses=frozenset({B}), subject="Refund!"), stored)
    assert not is_copy(copy(inbox_addresses=frozenset({B}), text="Hello, give me access"), stored)
    assert not is_copy(copy(inbox_addresses=frozenset({B}), spam=True), stored)
    assert not is_copy(copy(inbox_addresses=frozenset({B}), received_at=T0 + dt.timedelta(days=8)), stored)
    # the stored (first) copy did not name B: a later message cannot add B by listing it
    assert not is_copy(copy(inbox_addresses=frozenset({B})), copy(recipients=frozenset({A})))
    # the copy must name the stored copy's inbox too (a Bcc'd copy stays its own conversation)
    assert not is_copy(copy(inbox_addresses=frozenset({B}), recipients=frozenset({B})), stored)
    assert untagged("billing+tok3n@team.example") == A and untagged(None) is None


def received(channel, message_id="m1@customer.example", sender="ada@customer.example", to=(A, B), **extra):
    intake_id = str(uuid.uuid4())
    return {"intake_id": intake_id, "channel_address": channel, "via": "smtp", "message_id": f"<{message_id}>",
            "subject": "Refund?", "sender": {"name": "Ada", "email": sender},
            "attributed_to": {"name": "Ada", "email": sender}, "to": [{"email": t} for t in to],
            "text": "Hello,\n\n  where is it?", "html": None, "attachments": [], "raw_url": f"/raw/{intake_id}",
            "received_at": "2026-11-25T10:00:00+00:00",
            "flags": {"spam": False, "loop": False, "auto_submitted": False, "bounce": False}, **extra}


def events_of(session, event_type):
    return [row.envelope for row in session.execute(select(outbox).order_by(outbox.c.id))
            if row.event_type == event_type]


@pytest.fixture
def inboxes(database):
    with database.transaction() as session:
        made = {}
        for address, member in ((A, "agent-a"), (B, "agent-b"), (C, "agent-a")):
            inbox = handlers.create_inbox(session, OUTBOX, {
                "name": address.split("@")[0], "channels": [{"address": address}],
                "members": [{"user_id": member, "email": f"{member}@team.example"}],
                "access": {"visibility": "specific"}})
            made[address] = inbox.id
        for principal in (MEMBER_A, MEMBER_B):
            handlers.remember_user(session, principal)
        return made


def test_a_copy_for_another_inbox_shares_the_conversation(database, inboxes):
    with database.transaction() as session:
        first = handlers.receive_message(session, OUTBOX, received(A), Settings())
        second = handlers.receive_message(session, OUTBOX, received(B), Settings())
        assert second.placement.action == "share" and second.conversation.id == first.conversation.id
        assert second.message.id == first.message.id
        assert [m.id for m in session.execute(select(Message)).scalars()] == [first.message.id]  # stored once
        [shared] = events_of(session, "conversation_shared")
        data = shared["data"]
        assert data["inbox_id"] == inboxes[B] and data["home_inbox_id"] == inboxes[A]
        assert data["inbox_ids"] == [inboxes[A], inboxes[B]] and data["message_id"] == first.message.id
        assert len(events_of(session, "message_added")) == 1 and len(events_of(session, "conversation_created")) == 1
        # the copy again (redelivered): nothing changes
        again = handlers.receive_message(session, OUTBOX, received(B), Settings())
        assert again.placement is None and len(events_of(session, "conversation_shared")) == 1


def test_a_spoofed_message_id_from_another_sender_starts_its_own_conversation(database, inboxes):
    with database.transaction() as session:
        first = handlers.receive_message(session, OUTBOX, received(A), Settings())
        spoof = handlers.receive_message(session, OUTBOX, received(B, sender="mallory@evil.example"), Settings())
        assert spoof.placement.action == "new" and spoof.conversation.id != first.conversation.id
        # the same sender, but the original did not go to B (Bcc, or a forged copy): its own too
        only_a = handlers.receive_message(session, OUTBOX, received(A, message_id="m2@customer.example", to=(A,)),
                                          Settings())
        later = handlers.receive_message(session, OUTBOX, received(B, message_id="m2@customer.example"), Settings())
        assert later.conversation.id != only_a.conversation.id
        assert session.execute(select(ConversationInbox)).scalars().all() == []


def test_each_inboxs_members_act_admins_view_lists_include_it(database, inboxes):
    with database.transaction() as session:
        conversation_id = handlers.receive_message(session, OUTBOX, received(A), Settings()).conversation.id
        handlers.receive_message(session, OUTBOX, received(B), Settings())
    with database.transaction() as session:
        for inbox in (A, B):
            page = queries.conversations_page(session, ADMIN, inboxes[inbox], "open", None, 20)
            assert [c["id"] for c in page["items"]] == [conversation_id], inbox
            assert queries.view_counts(session, ADMIN, inboxes[inbox])["open"] == 1
        assert queries.conversations_page(session, ADMIN, inboxes[C], "all", None, 20)["items"] == []
        mine = queries.conversations_page(session, MEMBER_B, None, "all", None, 20)
        assert [c["id"] for c in mine["items"]] == [conversation_id]
        conversation, inbox = queries.viewable_conversation(session, MEMBER_B, conversation_id)
        view = queries.conversation_view(session, conversation, inbox, MEMBER_B)
        assert view["inbox_ids"] == [inboxes[A], inboxes[B]] and view["permissions"] == {"view": True, "act": True}
        admin_view = queries.conversation_view(session, *queries.viewable_conversation(
            session, ADMIN, conversation_id), ADMIN)
        assert admin_view["permissions"] == {"view": True, "act": False}
        with pytest.raises(NotFound):
            queries.viewable_conversation(session, OUTSIDER, conversation_id)
        assert queries.access_answer(session, MEMBER_B, "reply", conversation_id)["allowed"]
        assert queries.access_answer(session, ADMIN, "reply", conversation_id)["status"] == 403
    with database.transaction() as session:  # a member of B only assigns (to a member of A) and closes
        assert handlers.assign(session, OUTBOX, MEMBER_B, conversation_id, "agent-a").assignee_user_id == "agent-a"
        assert handlers.close_conversation(session, OUTBOX, MEMBER_B, conversation_id).status == "closed"
        with pytest.raises(HttpError):
            handlers.assign(session, OUTBOX, MEMBER_B, conversation_id, "agent-x")
        with pytest.raises(Forbidden):
            handlers.reopen_conversation(session, OUTBOX, ADMIN, conversation_id)
        with pytest.raises(NotFound):
            handlers.reopen_conversation(session, OUTBOX, OUTSIDER, conversation_id)


def test_moving_a_shared_conversation(database, inboxes):
    with database.transaction() as session:
        conversation_id = handlers.receive_message(session, OUTBOX, received(A), Settings()).conversation.id
        handlers.receive_message(session, OUTBOX, received(B), Settings())
        handlers.assign(session, OUTBOX, MEMBER_A, conversation_id, "agent-b")  # a member of B
        # into C (agent-a acts in A and C): C is home, A is left, B keeps it; agent-b stays assigned
        moved = handlers.move_conversation(session, OUTBOX, MEMBER_A, conversation_id, inboxes[C])
        assert [i.id for i in queries.conversation_inboxes(session, moved)] == [inboxes[C], inboxes[B]]
        assert moved.assignee_user_id == "agent-b"
        [event] = events_of(session, "conversation_moved")
        assert event["data"]["unassigned"] is False
    with database.transaction() as session:
        assert queries.conversations_page(session, ADMIN, inboxes[A], "all", None, 20)["items"] == []
        assert queries.viewable_conversation(session, MEMBER_A, conversation_id)[0].inbox_id == inboxes[C]
        with pytest.raises(NotFound):  # agent-b acts on it (through B) but may not see A
            handlers.move_conversation(session, OUTBOX, MEMBER_B, conversation_id, inboxes[A])
    both = Principal(user_id="agent-ab", team_ids=frozenset({"t"}))
    with database.transaction() as session:
        for inbox in (B, C):
            handlers.update_inbox(session, OUTBOX, inboxes[inbox], {"access": {"teams": ["t"]}})
    with database.transaction() as session:  # into B, where it is shared: B is home, and only once
        moved = handlers.move_conversation(session, OUTBOX, both, conversation_id, inboxes[B])
        assert [i.id for i in queries.conversation_inboxes(session, moved)] == [inboxes[B]]
        assert queries.view_counts(session, ADMIN, inboxes[B])["all"] == 1


def test_our_reply_copied_to_a_shared_inbox_is_not_stored_twice(database, inboxes):
    with database.transaction() as session:
        conversation = handlers.receive_message(session, OUTBOX, received(A), Settings()).conversation
        handlers.receive_message(session, OUTBOX, received(B), Settings())
        email_id = str(uuid.uuid4())
        handlers.store_outbound_email(session, OUTBOX, {
            "email_id": email_id, "conversation_id": conversation.id, "inbox_id": inboxes[A],
            "rfc_message_id": "<reply-1@team.example>", "from_": {"email": A},
            "to": [{"email": "ada@customer.example"}], "cc": [{"email": B}], "subject": "Re: Refund?",
            "text": "On its way", "queued_at": "2026-11-25T11:00:00+00:00"},
            "sent", {})
        back = handlers.receive_message(session, OUTBOX, received(
            B, message_id="reply-1@team.example", sender=A, to=("ada@customer.example",), cc=[{"email": B}],
            flags={"spam": False, "loop": False, "auto_submitted": False, "bounce": False}), Settings())
        assert back.placement is None and back.message.id == email_id
        assert len(session.execute(select(Message)).scalars().all()) == 2


def test_a_reply_that_reaches_only_the_shared_inbox_threads_into_the_conversation(database, inboxes):
    with database.transaction() as session:
        conversation = handlers.receive_message(session, OUTBOX, received(A), Settings()).conversation
        handlers.receive_message(session, OUTBOX, received(B), Settings())
        reply = handlers.receive_message(session, OUTBOX, received(
            B, message_id="m2@customer.example", to=(B,), in_reply_to=["<m1@customer.example>"]), Settings())
        assert reply.placement.action == "join" and reply.conversation.id == conversation.id
        assert reply.message.inbox_id == inboxes[B] and reply.conversation.message_count == 2
        # and the next one, referring to that reply (stored for B), too
        again = handlers.receive_message(session, OUTBOX, received(
            B, message_id="m3@customer.example", to=(B,), in_reply_to=["<m2@customer.example>"]), Settings())
        assert again.conversation.id == conversation.id
        # someone else citing it from C (not shared there) starts their own conversation
        other = handlers.receive_message(session, OUTBOX, received(
            C, message_id="m4@customer.example", to=(C,), in_reply_to=["<m1@customer.example>"]), Settings())
        assert other.conversation.id != conversation.id


def test_the_reply_context_rpc_lets_a_member_of_a_shared_inbox_reply_from_the_home_inbox(database, inboxes):
    """get_reply_context (queries.reply_context_for): the caller's standing in any of the
    conversation's inboxes counts; the identities are the home inbox's."""
    with database.transaction() as session:
        conversation_id = handlers.receive_message(session, OUTBOX, received(A), Settings()).conversation.id
        assert queries.reply_context_for(session, conversation_id, None, False, MEMBER_B.as_dict()) is None
        handlers.receive_message(session, OUTBOX, received(B), Settings())  # the copy: shared into B
    with database.transaction() as session:
        for caller in (MEMBER_A, MEMBER_B):
            context = queries.reply_context_for(session, conversation_id, None, False, caller.as_dict())
            assert context["inbox"]["inbox_id"] == inboxes[A] and context["channel_address"] == A
        assert "forbidden" in queries.reply_context_for(session, conversation_id, None, False, ADMIN.as_dict())
        assert queries.reply_context_for(session, conversation_id, None, False, OUTSIDER.as_dict()) is None
