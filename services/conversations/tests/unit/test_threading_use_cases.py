"""Threading scoped to participants and late parents (handlers.receive_message), called directly
against an SQLite database: no RabbitMQ, no nameko container."""

import uuid

import pytest
from sqlalchemy import select

from conversations import handlers, queries
from conversations.domain.placement import ReplyToClosed
from conversations.models import AwaitedParent, Conversation, Message, outbox
from conversations.service import ConversationsService
from conversations.settings import Settings
from mailroom_shared.auth import Principal

OUTBOX = ConversationsService.outbox
CHANNEL = "support@team.example"
MEMBER = Principal(user_id="agent-a", email="agent-a@team.example")


def events(session, *types):
    """(type, data) of what was recorded in the outbox, in order (inbox_updated left out)."""
    rows = session.execute(select(outbox).order_by(outbox.c.id)).all()
    return [(r.event_type, r.envelope["data"]) for r in rows
            if r.event_type != "inbox_updated" and (not types or r.event_type in types)]


def received(sender="ada@acme.example", *, name="Ada", attributed_to=None, minutes=0, cc=(), spam=False,
             automatic=False, message_id=None, **extra):
    intake_id = str(uuid.uuid4())
    return {"intake_id": intake_id, "channel_address": CHANNEL, "via": "smtp",
            "message_id": message_id or f"<{uuid.uuid4()}@mail.example>", "subject": "Refund?",
            "sender": {"name": name, "email": sender},
            "attributed_to": attributed_to or {"name": name, "email": sender}, "to": [{"email": CHANNEL}],
            "cc": [{"name": None, "email": c} for c in cc], "text": "Hello", "html": None, "attachments": [],
            "raw_url": f"/raw/{intake_id}", "received_at": f"2026-11-25T10:{minutes:02d}:00+00:00",
            "flags": {"spam": spam, "loop": False, "auto_submitted": automatic, "bounce": False}, **extra}


@pytest.fixture
def session(database):
    with database.transaction() as session:
        handlers.create_inbox(session, OUTBOX, {
            "name": "Support", "channels": [{"address": CHANNEL}],
            "members": [{"user_id": "agent-a", "email": "agent-a@team.example"}],
            "access": {"visibility": "specific", "teams": ["team-t"]}})
        yield session


def receive(session, data, settings=Settings()):
    return handlers.receive_message(session, OUTBOX, data, settings)


def first_of(session, sender="ada@acme.example", **kwargs):
    started = receive(session, received(sender, **kwargs))
    assert started.placement.action == "new"
    return started


# --- participants join ---------------------------------------------------------------------------

@pytest.mark.parametrize(("replier", "why"), [
    ("ada@acme.example", "the customer"),
    ("carol@acme.example", "a colleague at the customer's company"),
    ("bob@gmail.com", "someone the customer copied"),
    ("agent-a@team.example", "an inbox member"),
])
def test_participants_join_by_message_id(session, replier, why):
    first = first_of(session, cc=["bob@gmail.com"])
    reply = receive(session, received(replier, in_reply_to=[first.message.rfc_message_id], minutes=1))
    assert reply.placement.action == "join", why
    assert reply.conversation.id == first.conversation.id and reply.conversation.message_count == 2


def test_a_known_user_of_one_of_the_inbox_teams_is_a_member(session):
    handlers.remember_user(session, Principal(user_id="agent-t", email="Tess@Team.example",
                                              team_ids=frozenset({"team-t"})))
    handlers.remember_user(session, Principal(user_id="agent-x", email="xavier@team.example",
                                              team_ids=frozenset({"team-other"})))
    first = first_of(session, "ada@gmail.com")
    tess = receive(session, received("tess@team.example", in_reply_to=[first.message.rfc_message_id]))
    assert tess.placement.action == "join"
    xavier = receive(session, received("xavier@team.example", in_reply_to=[first.message.rfc_message_id]))
    assert xavier.placement.action == "new"  # a user of the account, but no member of this inbox


def test_the_contacts_other_addresses_join(session):
    first = first_of(session, "ada@gmail.com")
    stranger = received("ada.work@bigcorp.example", in_reply_to=[first.message.rfc_message_id])
    assert receive(session, stranger).placement.action == "new"
    handlers.learn_contact(session, "contact-ada", ["Ada@Gmail.com", "ada.work@bigcorp.example"])
    session.flush()
    known = received("ada.work@bigcorp.example", in_reply_to=[first.message.rfc_message_id])
    assert receive(session, known).conversation.id == first.conversation.id
    # and with a company address among the contact's, her colleagues count too
    colleague = received("ben@bigcorp.example", reply_token=first.conversation.reply_token)
    assert receive(session, colleague).conversation.id == first.conversation.id


def test_the_recipients_of_our_email_join(session):
    first = first_of(session)
    email_id = str(uuid.uuid4())
    handlers.store_outbound_email(session, OUTBOX, {
        "email_id": email_id, "inbox_id": first.conversation.inbox_id, "conversation_id": first.conversation.id,
        "rfc_message_id": "<ours@team.example>", "from_": {"email": CHANNEL},
        "to": [{"email": "ada@acme.example"}], "cc": [{"email": "lawyer@firm.example"}], "subject": "Re: Refund?",
        "text": "On its way", "queued_at": "2026-11-25T11:00:00+00:00"}, "queued", {})
    reply = receive(session, received("lawyer@firm.example", in_reply_to=["<ours@team.example>"], minutes=30))
    assert reply.conversation.id == first.conversation.id


def test_a_trusted_forward_speaks_for_the_customer(session):
    first = first_of(session, "ada@gmail.com")
    # ingest attributed it to Ada (a trusted, authenticated forward): she is the customer
    forward = received("assistant@elsewhere.example", attributed_to={"name": "Ada", "email": "ada@gmail.com"},
                       in_reply_to=[first.message.rfc_message_id])
    assert receive(session, forward).conversation.id == first.conversation.id


# --- strangers start a linked conversation -------------------------------------------------------

def test_a_stranger_citing_a_message_id_gets_a_new_linked_conversation(session):
    first = first_of(session)
    sneaky = receive(session, received("mallory@evil.example", in_reply_to=[first.message.rfc_message_id],
                                       references=[first.message.rfc_message_id], minutes=1))
    assert sneaky.placement.action == "new" and sneaky.conversation.id != first.conversation.id
    assert sneaky.conversation.related_conversation_id == first.conversation.id
    assert session.get(Conversation, first.conversation.id).message_count == 1
    created = [data for kind, data in events(session, "conversation_created")]
    assert [c["related_conversation_id"] for c in created] == [None, first.conversation.id]
    assert created[1]["contact_email"] == "mallory@evil.example"
    view = queries.conversation_summary(sneaky.conversation)
    assert view["related_conversation_id"] == first.conversation.id


def test_a_stranger_using_a_reply_token_gets_a_new_linked_conversation(session):
    first = first_of(session)
    sneaky = receive(session, received("mallory@evil.example", reply_token=first.conversation.reply_token.upper()))
    assert sneaky.placement.action == "new"
    assert sneaky.conversation.related_conversation_id == first.conversation.id
    assert sneaky.conversation.reply_token != first.conversation.reply_token


def test_a_gmail_stranger_does_not_join_a_gmail_customers_thread(session):
    first = first_of(session, "ada@gmail.com")
    stranger = receive(session, received("mallory@gmail.com", in_reply_to=[first.message.rfc_message_id]))
    assert stranger.placement.action == "new"
    assert stranger.conversation.related_conversation_id == first.conversation.id
    hotmail = receive(session, received("mallory@hotmail.co.uk", reply_token=first.conversation.reply_token))
    assert hotmail.placement.action == "new"


def test_an_automatic_flag_is_no_pass(session):
    first = first_of(session)
    auto = receive(session, received("noreply@evil.example", automatic=True,
                                     in_reply_to=[first.message.rfc_message_id]))
    assert auto.placement.action == "new" and auto.conversation.related_conversation_id == first.conversation.id
    ooo = receive(session, received("ada@acme.example", automatic=True, in_reply_to=[first.message.rfc_message_id]))
    assert ooo.placement.action == "join"


def test_a_message_joins_the_first_conversation_it_refers_to_where_its_sender_takes_part(session):
    strangers = first_of(session, "other@elsewhere.example")
    ours = first_of(session)
    reply = receive(session, received("ada@acme.example", in_reply_to=[strangers.message.rfc_message_id],
                                      references=[ours.message.rfc_message_id]))
    assert reply.placement.action == "join" and reply.conversation.id == ours.conversation.id


def test_only_participants_reopen(session):
    first = first_of(session)
    handlers.close_conversation(session, OUTBOX, MEMBER, first.conversation.id)
    stranger = receive(session, received("mallory@evil.example", in_reply_to=[first.message.rfc_message_id]))
    assert stranger.placement.action == "new"
    assert stranger.conversation.related_conversation_id == first.conversation.id
    assert stranger.conversation.reopened_from is None
    assert session.get(Conversation, first.conversation.id).status == "closed"
    assert not events(session, "conversation_reopened")
    customer = receive(session, received("ada@acme.example", in_reply_to=[first.message.rfc_message_id]))
    assert customer.placement.action == "reopen" and customer.conversation.status == "open"
    assert [d["conversation_id"] for _, d in events(session, "conversation_reopened")] == [first.conversation.id]


def test_with_reply_to_closed_new_a_stranger_is_linked_not_a_continuation(session):
    settings = Settings(reply_to_closed=ReplyToClosed.NEW)
    first = first_of(session)
    handlers.close_conversation(session, OUTBOX, MEMBER, first.conversation.id)
    stranger = receive(session, received("mallory@evil.example", in_reply_to=[first.message.rfc_message_id]),
                       settings)
    assert stranger.conversation.reopened_from is None
    assert stranger.conversation.related_conversation_id == first.conversation.id
    customer = receive(session, received(in_reply_to=[first.message.rfc_message_id]), settings)
    assert customer.conversation.reopened_from == first.conversation.id


def test_a_reply_to_the_old_inbox_of_a_moved_conversation_follows_it_only_for_participants(session):
    first = first_of(session)
    legal = handlers.create_inbox(session, OUTBOX, {
        "name": "Legal", "channels": [{"address": "legal@team.example"}],
        "members": [{"user_id": "agent-a", "email": "agent-a@team.example"}]})
    handlers.move_conversation(session, OUTBOX, MEMBER, first.conversation.id, legal.id)
    customer = receive(session, received(in_reply_to=[first.message.rfc_message_id]))
    assert customer.conversation.id == first.conversation.id and customer.message.inbox_id == legal.id
    stranger = receive(session, received("mallory@evil.example", in_reply_to=[first.message.rfc_message_id]))
    assert stranger.placement.action == "new" and stranger.conversation.inbox_id != legal.id
    assert stranger.conversation.related_conversation_id == first.conversation.id


# --- late parents (out-of-order arrival) ---------------------------------------------------------

def test_a_reply_processed_before_its_parent_ends_up_in_one_conversation(session):
    parent = received(message_id="<parent@acme.example>", subject="Refund?", minutes=0)
    reply = received(message_id="<reply@acme.example>", in_reply_to=["<parent@acme.example>"],
                     references=["<parent@acme.example>"], minutes=1)
    first = receive(session, reply)  # the reply first: it starts a conversation …
    assert first.placement.action == "new"
    assert [a.rfc_message_id for a in session.execute(select(AwaitedParent)).scalars()] == ["parent@acme.example"]
    late = receive(session, parent)  # … that its parent joins instead of opening its own
    assert late.placement.action == "adopt" and late.conversation.id == first.conversation.id
    assert late.conversation.message_count == 2 and late.conversation.status == "open"
    assert [kind for kind, _ in events(session)] == ["conversation_created", "message_added", "message_added"]
    added = [d for _, d in events(session, "message_added")]
    assert {d["conversation_id"] for d in added} == {first.conversation.id}
    assert added[1]["rfc_message_id"] == "parent@acme.example"
    messages = session.execute(select(Message.rfc_message_id).where(Message.conversation_id == first.conversation.id)
                               .order_by(Message.received_at)).scalars().all()
    assert messages == ["parent@acme.example", "reply@acme.example"]  # the parent is first by date
    assert late.conversation.last_message_at.minute == 1  # the newest activity is still the reply
    # later replies to either follow
    later = receive(session, received(in_reply_to=["<parent@acme.example>"], minutes=5))
    assert later.conversation.id == first.conversation.id


def test_a_whole_thread_in_reverse_order_ends_up_in_one_conversation(session):
    ids = [f"<m{n}@acme.example>" for n in range(4)]
    messages = [received(message_id=ids[n], in_reply_to=ids[n - 1:n], references=ids[:n], minutes=n)
                for n in range(4)]
    conversations = {receive(session, m).conversation.id for m in reversed(messages)}
    assert len(conversations) == 1
    assert len(events(session, "conversation_created")) == 1


def test_a_late_parent_from_a_colleague_the_reply_copied_is_adopted(session):
    reply = received("ada@acme.example", in_reply_to=["<p@partner.example>"], cc=["bob@gmail.com"], minutes=1)
    parent = received("bob@gmail.com", message_id="<p@partner.example>", cc=["ada@acme.example"])
    started = receive(session, reply)
    assert receive(session, parent).conversation.id == started.conversation.id


def test_a_message_a_stranger_planted_a_reference_to_is_not_adopted(session):
    # Mallory guesses (or learns) the Message-ID Ada's next email will have and cites it first
    planted = receive(session, received("mallory@evil.example", in_reply_to=["<next@acme.example>"]))
    ada = receive(session, received("ada@acme.example", message_id="<next@acme.example>", minutes=1))
    assert ada.placement.action == "new" and ada.conversation.id != planted.conversation.id
    assert ada.conversation.related_conversation_id == planted.conversation.id
    assert session.get(Conversation, planted.conversation.id).message_count == 1
    assert len(events(session, "conversation_created")) == 2


def test_a_late_parent_never_reopens_and_keeps_spam_apart(session):
    reply = receive(session, received(in_reply_to=["<p1@acme.example>"], minutes=1))
    handlers.close_conversation(session, OUTBOX, MEMBER, reply.conversation.id)
    parent = receive(session, received(message_id="<p1@acme.example>"))
    assert parent.placement.action == "adopt" and parent.conversation.status == "closed"
    assert not events(session, "conversation_reopened")

    spam_reply = receive(session, received(in_reply_to=["<p2@acme.example>"], spam=True, minutes=1))
    clean_parent = receive(session, received(message_id="<p2@acme.example>"))
    assert clean_parent.placement.action == "new" and clean_parent.conversation.spam is False
    assert clean_parent.conversation.related_conversation_id == spam_reply.conversation.id


def test_a_quarantined_late_parent_is_adopted_and_filled_in_later(session):
    reply = receive(session, received(in_reply_to=["<q@acme.example>"], minutes=1))
    placeholder = handlers.receive_quarantined(session, OUTBOX, {
        "intake_id": "intake-q", "channel_address": CHANNEL, "via": "smtp", "message_id": "<q@acme.example>",
        "sender": {"name": "Ada", "email": "ada@acme.example"}, "subject": "Refund?", "reason": "parse timeout",
        "received_at": "2026-11-25T10:00:00+00:00"}, Settings())
    assert placeholder.conversation.id == reply.conversation.id
    filled = receive(session, received(message_id="<q@acme.example>", text="the real text"))
    assert filled.placement is None and filled.message.text == "the real text"
