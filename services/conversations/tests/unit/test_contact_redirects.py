"""A merge or an erasure leaves a redirect that every later event about the gone contact goes
through (contact_corrections.py, issue #17), against an SQLite database: a late or redelivered
contact_created or contact_updated of a merged contact teaches the survivor, not the merged one;
one of an erased contact is ignored; chains of merges resolve; a conversation that took the merged
contact just before the merge is re-pointed after its message is written; an erasure drops the
person's events the outbox has not relayed yet and leaves everyone else's."""

import uuid

import pytest
from sqlalchemy import select

from conversations import contact_corrections, handlers
from conversations.models import ContactRedirect, Conversation, KnownContact, outbox
from conversations.service import ConversationsService
from conversations.settings import Settings

OUTBOX = ConversationsService.outbox
CHANNEL = "billing@team.example"


def received(email, subject):
    intake_id = str(uuid.uuid4())
    sender = {"name": None, "email": email}
    return {"intake_id": intake_id, "channel_address": CHANNEL, "via": "smtp",
            "message_id": f"<{uuid.uuid4()}@customer.example>", "subject": subject,
            "sender": sender, "attributed_to": sender, "to": [{"email": CHANNEL}], "text": "hello", "html": None,
            "attachments": [], "raw_url": f"/raw/{intake_id}", "received_at": "2026-11-25T10:00:00+00:00",
            "flags": {"spam": False, "loop": False, "auto_submitted": False, "bounce": False}}


@pytest.fixture
def inbox(database):
    with database.transaction() as session:
        handlers.create_inbox(session, OUTBOX, {"name": "Billing", "channels": [{"address": CHANNEL}]})
        contact_corrections.learn_contact(session, {"contact_id": "c-a", "emails": ["a@customer.example"]})
        contact_corrections.learn_contact(session, {"contact_id": "c-b", "emails": ["b@customer.example"]})


def known(database):
    with database.transaction() as session:
        return dict(session.execute(select(KnownContact.email, KnownContact.contact_id)).all())


def merge(database, survivor, merged, emails):
    with database.transaction() as session:
        return contact_corrections.follow_merge(session, {"survivor_id": survivor, "merged_id": merged,
                                                          "emails": emails})


def test_a_late_contact_created_or_updated_of_the_merged_contact_teaches_the_survivor(database, inbox):
    merge(database, "c-a", "c-b", ["a@customer.example", "b@customer.example"])
    with database.transaction() as session:  # the old events again, late (another id: not de-duplicated)
        contact_corrections.learn_contact(session, {"contact_id": "c-b", "emails": ["b@customer.example"]})
        contact_corrections.update_contact(session, {"contact_id": "c-b", "emails": ["b@customer.example",
                                                     "b2@customer.example"], "removed": ["a@customer.example"]})
    assert known(database) == {"a@customer.example": "c-a", "b@customer.example": "c-a",
                               "b2@customer.example": "c-a"}
    # mail from the merged address now: its conversation is the survivor's
    with database.transaction() as session:
        stored = handlers.receive_message(session, OUTBOX, received("b@customer.example", "later"), Settings())
        assert stored.conversation.contact_id == "c-a"


def test_chains_of_merges_and_an_erased_survivor_resolve(database, inbox):
    merge(database, "c-a", "c-b", ["a@customer.example", "b@customer.example"])
    merge(database, "c-z", "c-a", ["z@customer.example", "a@customer.example", "b@customer.example"])
    with database.transaction() as session:
        assert contact_corrections.current_contact(session, "c-b") == "c-z"
        assert contact_corrections.current_contact(session, "c-new") == "c-new"
        contact_corrections.learn_contact(session, {"contact_id": "c-b", "emails": ["b@customer.example"]})
    assert set(known(database).values()) == {"c-z"}
    with database.transaction() as session:
        contact_corrections.erase_contact(session, OUTBOX, {"erasure_id": "e-1", "contact_id": "c-z", "emails": [
            "z@customer.example", "a@customer.example", "b@customer.example"], "identities": [], "intake_ids": []})
    with database.transaction() as session:
        assert contact_corrections.current_contact(session, "c-b") is contact_corrections.GONE
        assert contact_corrections.current_contact(session, "c-a") is contact_corrections.GONE
        # late events of any of them put nothing back
        contact_corrections.learn_contact(session, {"contact_id": "c-b", "emails": ["b@customer.example"]})
        contact_corrections.update_contact(session, {"contact_id": "c-z", "emails": ["z@customer.example"],
                                                     "removed": []})
        # a merge into the erased contact, applied late, only leaves a redirect to nothing
        assert merge(database, "c-z", "c-q", ["q@customer.example"]) == 0
    assert known(database) == {}
    with database.transaction() as session:
        assert session.get(ContactRedirect, "c-q").survivor_id is None


def test_a_conversation_that_took_the_merged_contact_meanwhile_is_re_pointed(database, inbox):
    # the message is written with the merged contact (known_contacts read before the merge) ...
    with database.transaction() as session:
        data = received("b@customer.example", "during the merge")
        stored = handlers.receive_message(session, OUTBOX, data, Settings())
        conversation_id = stored.conversation.id
        assert stored.conversation.contact_id == "c-b"
        session.flush()
        # ... the merge's redirect is there when it settles (the merge committed first)
        session.add(ContactRedirect(contact_id="c-b", survivor_id="c-a"))
        session.flush()
        assert contact_corrections.settle_contacts(session, data) == 1
    with database.transaction() as session:
        assert session.get(Conversation, conversation_id).contact_id == "c-a"
        # nothing to do for a message whose contact is current, or without a readable sender
        assert contact_corrections.settle_contacts(session, received("a@customer.example", "x")) == 0
        assert contact_corrections.settle_contacts(session, {"attributed_to": None, "sender": "junk"}) == 0


def test_an_erasure_drops_the_persons_unrelayed_events_and_keeps_the_others(database, inbox):
    with database.transaction() as session:
        handlers.receive_message(session, OUTBOX, received("b@customer.example", "B's secret"), Settings())
        handlers.receive_message(session, OUTBOX, received("a@customer.example", "A's order"), Settings())
    with database.transaction() as session:
        before = session.execute(select(outbox.c.event_type, outbox.c.envelope)).all()
        assert any("B's secret" in str(envelope) for _t, envelope in before)
        erased = contact_corrections.erase_contact(session, OUTBOX, {
            "erasure_id": "e-2", "contact_id": "c-b", "emails": ["B@Customer.example"], "identities": [],
            "intake_ids": []})
        assert erased["pending_events"] >= 2  # conversation_created, message_added
    with database.transaction() as session:
        after = session.execute(select(outbox.c.event_type, outbox.c.envelope)).all()
    text = str([envelope for _t, envelope in after]).lower()
    assert "b's secret" not in text and "b@customer.example" not in text
    assert "a's order" in text  # the other customer's events go out
    assert [t for t, _e in after if t == "contact_messages_erased"]  # the confirmation itself stays
    # a published event is history: it is not touched
    with database.transaction() as session:
        session.execute(outbox.update().values(published_at=outbox.c.created_at))
        again = contact_corrections.erase_contact(session, OUTBOX, {
            "erasure_id": "e-3", "contact_id": "c-a", "emails": ["a@customer.example"], "identities": [],
            "intake_ids": []})
        assert again["pending_events"] == 0


def test_contact_created_in_the_same_transaction_as_the_first_message_reaches_its_conversation(database, inbox):
    """One group commit may hold a new sender's message and then contacts' contact_created for
    them: the conversation gets its contact in the database and in the transaction's own view
    (the Received handed back is a snapshot of what was written; the session reads the row)."""
    with database.transaction() as session:
        stored = handlers.receive_message(session, OUTBOX, received("new@customer.example", "Hi"), Settings())
        assert stored.conversation.contact_id is None
        assert session.get(Conversation, stored.conversation.id).contact_id is None
        contact_corrections.learn_contact(session, {"contact_id": "c-new", "emails": ["New@Customer.example"]})
        assert session.get(Conversation, stored.conversation.id).contact_id == "c-new"
    with database.transaction() as session:
        assert session.get(Conversation, stored.conversation.id).contact_id == "c-new"
    assert known(database)["new@customer.example"] == "c-new"
