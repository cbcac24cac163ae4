"""An email's contacts and timeline entries on PostgreSQL, where record_inbound_message finds,
names or creates the sender's contact and logs the message in one statement, and
record_outbound_email does the same for each recipient of an email we sent (the unit tests run
the ORM path on SQLite): new and known senders, a redelivered or shared email, a race for a
new address between two transactions, mail to an address that a merge moved or an erasure
removed, and sent mail to new, known and our own addresses, sent once or redelivered."""

import threading
import uuid

import pytest
from sqlalchemy import event, func, select

from contacts import corrections, handlers
from contacts.models import (
    Contact,
    ContactEmail,
    MessageConversation,
    TimelineEntry,
    TimelineEntryChannel,
    outbox,
)
from contacts.service import ContactsService
from contacts.settings import Settings
from mailroom_shared.auth import SUPER_ADMIN, Principal
from mailroom_shared.db import Database
from mailroom_testing.specs import CONTACTS

pytestmark = pytest.mark.integration

OUTBOX = ContactsService.outbox


@pytest.fixture
def database(make_database, migrated_templates):
    database = Database(make_database("contacts", template=migrated_templates.template_for(
        "contacts", CONTACTS.migrations)))
    yield database
    database.dispose()


def message(sender, *, name="Ada", channel="support@team.example", message_id=None, **extra):
    return {"intake_id": str(uuid.uuid4()), "channel_address": channel,
            "message_id": message_id or f"{uuid.uuid4()}@x", "subject": "Hello",
            "attributed_to": {"name": name, "email": sender}, "text": "Hi  there", "html": None,
            "attachments": [{"filename": "a.pdf", "size": 3, "disposition": "attachment", "url": "/a"}],
            "received_at": "2026-11-25T10:00:00+00:00", "flags": {"spam": False, "loop": False},
            "forward": {"trusted": True, "forwarded_by": {"email": "agent@team.example"}}, **extra}


def record(session, data):
    return handlers.record_inbound_message(session, OUTBOX, data, str(uuid.uuid4()), Settings())


def events(session):
    return [(row.event_type, row.envelope["data"]) for row in session.execute(select(outbox).order_by(outbox.c.id))]


def test_a_new_sender_gets_a_contact_and_the_message_on_its_timeline_in_one_statement(database):
    statements = []
    event.listen(database.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with database.transaction() as session:
        entry_id = record(session, message("Ada@Example.com"))
    # our inbox addresses (a service caches them), the contact and the entry, the two events
    assert [sql.split(None, 1)[0] for sql in statements] == ["SELECT", "WITH", "INSERT"]
    assert "own_addresses" in statements[0] and statements[2].startswith("INSERT INTO outbox")
    with database.transaction() as session:
        contact = handlers.find_contact_by_email(session, "ada@example.com")
        entry = session.get(TimelineEntry, entry_id)
        assert (contact.name, entry.contact_id, entry.direction, entry.snippet, entry.kind) == (
            "Ada", contact.id, "in", "Hi there", "message")
        assert entry.attachments == [{"filename": "a.pdf", "content_type": None, "size": 3, "sha256": None,
                                      "url": "/a"}]
        assert entry.forwarded_by == {"email": "agent@team.example"}
        [(created, data), (added, entry_data)] = events(session)
        assert (created, data["contact_id"], data["emails"], data["name"]) == (
            "contact_created", contact.id, ["ada@example.com"], "Ada")
        assert (added, entry_data["entry_id"], entry_data["contact_id"]) == ("timeline_entry_added", entry_id,
                                                                             contact.id)


def test_a_known_sender_gets_the_message_and_a_name_only_if_it_had_none(database):
    with database.transaction() as session:
        nameless = handlers.create_contact(session, OUTBOX, None, ["bo@example.com"])
        named = handlers.create_contact(session, OUTBOX, "Cy", ["cy@example.com"])
        blank = handlers.create_contact(session, OUTBOX, "", ["di@example.com"])
    with database.transaction() as session:
        first, second = record(session, message("bo@example.com", name="Bo")), record(session, message(
            "cy@example.com", name="Someone else"))
        record(session, message("di@example.com", name="Di"))
    with database.transaction() as session:
        assert session.get(Contact, nameless.id).name == "Bo"
        assert session.get(Contact, blank.id).name == "Di"
        assert session.get(Contact, named.id).name == "Cy"
        assert session.get(TimelineEntry, first).contact_id == nameless.id
        assert session.get(TimelineEntry, second).contact_id == named.id
        assert [kind for kind, _ in events(session)] == ["contact_created"] * 3 + ["timeline_entry_added"] * 3
        assert session.scalar(select(func.count()).select_from(Contact)) == 3


def test_the_same_email_again_is_one_entry_naming_every_inbox_address_it_reached(database):
    data = message("dee@example.com")
    with database.transaction() as session:
        entry_id = record(session, data)
    with database.transaction() as session:
        assert record(session, {**data, "intake_id": str(uuid.uuid4())}) == entry_id  # redelivered another way
        assert record(session, {**data, "intake_id": str(uuid.uuid4()), "channel_address": "Sales@Team.example"}
                      ) == entry_id
        assert session.scalar(select(func.count()).select_from(TimelineEntry)) == 1
        assert list(session.execute(select(TimelineEntryChannel.channel_address)).scalars()) == ["sales@team.example"]
        assert [kind for kind, _ in events(session)] == ["contact_created", "timeline_entry_added"]


def test_two_transactions_racing_for_a_new_address_make_one_contact(database):
    """The second waits on the first's address row, inserts nothing, and finds its contact."""
    address = f"race-{uuid.uuid4().hex[:6]}@example.com"
    with database.sessions() as first:
        first_entry = record(first, message(address))
        outcome = {}

        def second():
            with database.transaction() as session:
                outcome["entry"] = record(session, message(address, name="Eve"))

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(1.0)
        assert thread.is_alive()  # waiting on the first transaction's unique address row
        first.commit()
    thread.join(30)
    with database.transaction() as session:
        [contact] = session.execute(select(Contact)).scalars().all()
        assert session.scalar(select(func.count()).select_from(ContactEmail)) == 1
        assert {session.get(TimelineEntry, e).contact_id for e in (first_entry, outcome["entry"])} == {contact.id}
        assert [kind for kind, _ in events(session)] == ["contact_created", "timeline_entry_added",
                                                          "timeline_entry_added"]


def test_mail_follows_a_merged_address_and_an_erased_one_starts_a_new_contact(database):
    with database.transaction() as session:
        ada = handlers.create_contact(session, OUTBOX, "Ada", ["ada@example.com"])
        eve = handlers.create_contact(session, OUTBOX, "Eve", ["eve@example.com"])
    with database.transaction() as session:
        corrections.merge(session, OUTBOX, ada.id, eve.id, "agent-1")
    with database.transaction() as session:
        assert session.get(TimelineEntry, record(session, message("eve@example.com"))).contact_id == ada.id
    with database.transaction() as session:
        corrections.erase(session, OUTBOX, ada.id, Principal("admin", roles=frozenset({SUPER_ADMIN})))
    with database.transaction() as session:
        entry = session.get(TimelineEntry, record(session, message("eve@example.com")))
        assert entry.contact_id != ada.id
        assert handlers.find_contact_by_email(session, "eve@example.com").id == entry.contact_id


def sent_email(*, to, cc=(), bcc=(), sender="support@team.example"):
    return {"email_id": str(uuid.uuid4()), "conversation_id": str(uuid.uuid4()),
            "rfc_message_id": f"<{uuid.uuid4()}@team.example>", "from_": {"email": sender},
            "to": [{"name": name, "email": email} for name, email in to],
            "cc": [{"name": name, "email": email} for name, email in cc],
            "bcc": [{"name": name, "email": email} for name, email in bcc], "subject": "Re: Hello",
            "text": "Thanks,\n\n  we", "html": None,
            "attachments": [{"filename": "a.pdf", "size": 3, "disposition": "attachment", "url": "/o/a"}],
            "sent_at": "2026-11-25T11:00:00+00:00"}


def test_a_sent_email_reaches_each_recipients_timeline_in_one_statement_per_recipient(database):
    with database.transaction() as session:
        handlers.apply_inbox_update(session, {"inbox_id": "i2", "channel_addresses": ["sales@team.example"]})
        known = handlers.create_contact(session, OUTBOX, None, ["bo@example.com"])
        session.execute(outbox.delete())
    email = sent_email(to=[("Ada", "Ada@Example.com"), ("Our sales", "sales@team.example")],
                       cc=[("Bo", "bo@example.com"), ("Us", "Support@team.example")],
                       bcc=[("Ada again", "ada@example.com")])
    statements = []
    event.listen(database.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with database.transaction() as session:
        entry_ids = handlers.record_outbound_email(session, OUTBOX, email, str(uuid.uuid4()))
    # the link to the conversation, our inbox addresses, one statement per recipient, the events
    assert [sql.split(None, 1)[0] for sql in statements] == ["INSERT", "SELECT", "WITH", "WITH", "INSERT"]
    with database.transaction() as session:
        ada = handlers.find_contact_by_email(session, "ada@example.com")
        assert (ada.name, session.get(Contact, known.id).name) == ("Ada", "Bo")  # Bo had no name: now he has
        assert handlers.find_contact_by_email(session, "sales@team.example") is None
        entries = [session.get(TimelineEntry, entry_id) for entry_id in entry_ids]
        assert [(e.contact_id, e.direction, e.channel_address, e.snippet, e.intake_id) for e in entries] == [
            (ada.id, "out", "support@team.example", "Thanks, we", f"outbound:{email['email_id']}"),
            (known.id, "out", "support@team.example", "Thanks, we", f"outbound:{email['email_id']}")]
        assert entries[0].attachments == [{"filename": "a.pdf", "content_type": None, "size": 3, "sha256": None,
                                           "url": "/o/a"}]
        assert session.get(MessageConversation, f"outbound:{email['email_id']}").conversation_id == \
            email["conversation_id"]
        assert [(kind, data.get("contact_id"), data.get("direction"), data.get("conversation_id"))
                for kind, data in events(session)] == [
            ("contact_created", ada.id, None, None),
            ("timeline_entry_added", ada.id, "out", email["conversation_id"]),
            ("timeline_entry_added", known.id, "out", email["conversation_id"])]


def test_a_redelivered_sent_email_adds_nothing_and_keeps_its_conversation(database):
    email = sent_email(to=[("Ada", "ada@example.com")])
    with database.transaction() as session:
        [entry_id] = handlers.record_outbound_email(session, OUTBOX, email, str(uuid.uuid4()))
    with database.transaction() as session:
        moved = {**email, "conversation_id": str(uuid.uuid4())}
        assert handlers.record_outbound_email(session, OUTBOX, moved, str(uuid.uuid4())) == []
        assert session.scalar(select(func.count()).select_from(TimelineEntry)) == 1
        assert session.get(MessageConversation, f"outbound:{email['email_id']}").conversation_id == \
            email["conversation_id"]
        assert [kind for kind, _ in events(session)] == ["contact_created", "timeline_entry_added"]
        # an inbound copy of the same Message-ID (our reply, Cc'd back to us) is an entry of its own
        inbound = record(session, message("ada@example.com", message_id=email["rfc_message_id"]))
        assert inbound != entry_id and session.get(TimelineEntry, inbound).direction == "in"
