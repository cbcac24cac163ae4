"""contacts' merges and erasures as conversations applies them (contact_corrections.py), against
an SQLite database: a merge re-points conversations and known addresses; an erasure redacts the
person's messages and conversations and nothing of anyone else, also for hostile addresses
(`%`, `_` match themselves, not everything), and a redelivery erases nothing more."""

import json
import uuid

import pytest
from sqlalchemy import select

from conversations import contact_corrections, handlers
from conversations.models import Conversation, KnownContact, Message, outbox
from conversations.service import ConversationsService
from conversations.settings import Settings

OUTBOX = ConversationsService.outbox
CHANNEL = "billing@team.example"


def received(sender, subject, text, **extra):
    intake_id = str(uuid.uuid4())
    return {"intake_id": intake_id, "channel_address": CHANNEL, "via": "smtp",
            "message_id": f"<{uuid.uuid4()}@customer.example>", "subject": subject,
            "sender": sender, "attributed_to": sender, "to": [{"email": CHANNEL}],
            "text": text, "html": f"<p>{text}</p>", "attachments": [{"filename": "a.pdf", "url": "/x"}],
            "raw_url": f"/raw/{intake_id}", "received_at": "2026-11-25T10:00:00+00:00",
            "flags": {"spam": False, "loop": False, "auto_submitted": False, "bounce": False}, **extra}


@pytest.fixture
def mail(database):
    with database.transaction() as session:
        handlers.create_inbox(session, OUTBOX, {"name": "Billing", "channels": [{"address": CHANNEL}]})
        ada = handlers.receive_message(session, OUTBOX, received(
            {"name": "Ada Lovelace", "email": "Ada@Customer.example"}, "Ada's refund", "account 4711"), Settings())
        bob = handlers.receive_message(session, OUTBOX, received(
            {"name": "Bob", "email": "bob@customer.example"}, "Bob's order", "bob text"), Settings())
        handlers.learn_contact(session, "c-ada", ["ada@customer.example"])
        handlers.learn_contact(session, "c-bob", ["bob@customer.example"])
        return ada.conversation.id, bob.conversation.id


def test_a_merge_moves_conversations_and_addresses_to_the_survivor(database, mail):
    ada_conversation, bob_conversation = mail
    with database.transaction() as session:
        moved = contact_corrections.follow_merge(session, {
            "survivor_id": "c-bob", "merged_id": "c-ada", "emails": ["bob@customer.example", "ada@customer.example"]})
        assert moved == 1
    with database.transaction() as session:
        assert session.get(Conversation, ada_conversation).contact_id == "c-bob"
        assert dict(session.execute(select(KnownContact.email, KnownContact.contact_id)).all()) == {
            "ada@customer.example": "c-bob", "bob@customer.example": "c-bob"}


def test_an_erasure_redacts_the_persons_messages_and_nothing_else(database, mail):
    ada_conversation, bob_conversation = mail
    hostile = {"erasure_id": "e-0", "contact_id": "c-none", "emails": ["%@customer.example", "_@x.example", "%"],
               "identities": [{"kind": "phone", "value": "%"}], "intake_ids": ["%"]}
    with database.transaction() as session:
        assert contact_corrections.erase_contact(session, OUTBOX, hostile)["messages"] == 0

    data = {"erasure_id": "e-1", "contact_id": "c-ada", "emails": ["ada@customer.example"], "intake_ids": []}
    with database.transaction() as session:
        erased = contact_corrections.erase_contact(session, OUTBOX, data)
    assert erased == {"conversations": 1, "messages": 1, "attachments": 1, "known_addresses": 1,
                      "pending_events": 2}  # her conversation_created and message_added, not relayed yet
    with database.transaction() as session:
        conversation = session.get(Conversation, ada_conversation)
        assert (conversation.contact_id, conversation.contact_email, conversation.subject) == (None, None, "[erased]")
        [message] = session.execute(select(Message).where(Message.conversation_id == ada_conversation)).scalars()
        dumped = json.dumps({c.key: getattr(message, c.key) for c in Message.__table__.columns}, default=str).lower()
        assert "ada@" not in dumped and "4711" not in dumped and "lovelace" not in dumped and "/raw/" not in dumped
        assert message.flags["erased"] is True and message.attachments == [] and message.intake_id is None
        bob = session.get(Conversation, bob_conversation)
        assert bob.subject == "Bob's order" and bob.contact_id == "c-bob"
        [bobs] = session.execute(select(Message).where(Message.conversation_id == bob_conversation)).scalars()
        assert bobs.text == "bob text" and bobs.sender["email"] == "bob@customer.example"
        events = [row.envelope["data"] for row in session.execute(
            select(outbox.c.envelope).where(outbox.c.event_type == "contact_messages_erased").order_by(outbox.c.id))]
        assert events[-1] == {"erasure_id": "e-1", "contact_id": "c-ada", "erased": erased}

    with database.transaction() as session:  # redelivered: the same message again, nothing new to erase
        again = contact_corrections.erase_contact(session, OUTBOX, data)
    assert again == {"conversations": 0, "messages": 0, "attachments": 0, "known_addresses": 0,
                     "pending_events": 0}
