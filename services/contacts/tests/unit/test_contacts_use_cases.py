"""The contacts use cases (handlers.py) and the service's event wiring, called directly against
an SQLite database: no RabbitMQ, no nameko container."""

import uuid

import pytest
from sqlalchemy import func, select

from contacts import handlers
from contacts.models import Contact, ContactEmail, TimelineEntry, outbox
from contacts.service import ContactsService
from contacts.settings import Settings
from mailroom_shared.http import Conflict, HttpError, NotFound

OUTBOX = ContactsService.outbox


def message(sender, *, channel="support@team.example", **extra):
    return {"intake_id": str(uuid.uuid4()), "channel_address": channel, "message_id": f"{uuid.uuid4()}@x",
            "subject": "Hello", "attributed_to": {"name": "Someone", "email": sender}, "text": "Hi  there",
            "html": None, "attachments": [], "received_at": "2026-11-25T10:00:00+00:00", "via": "smtp",
            "size": 1, "raw_url": "/raw", "flags": {"spam": False, "loop": False, "auto_submitted": False,
                                                    "bounce": False}, **extra}


def sent_email(*recipients, sender="support@team.example"):
    return {"email_id": str(uuid.uuid4()), "conversation_id": str(uuid.uuid4()), "rfc_message_id": "<out@x>",
            "from_": {"email": sender}, "to": [{"name": " Ada ", "email": r} for r in recipients], "cc": [],
            "bcc": [{"email": "ADA@example.com"}], "subject": "Re: Hello", "text": "Thanks,\n\n  we", "html": None,
            "attachments": [{"filename": "a.pdf", "size": 1, "disposition": "attachment"}],
            "sent_at": "2026-11-25T11:00:00+00:00"}


def recorded_events(session):
    return [row.event_type for row in session.execute(select(outbox).order_by(outbox.c.id))]


def inbox_update(inbox_id, *addresses):
    return {"inbox_id": inbox_id, "name": inbox_id, "channel_addresses": list(addresses)}


def test_automated_senders_get_a_contact_only_when_the_settings_say_so(database):
    with database.transaction() as session:
        robot = message("no-reply@shop.example")
        assert handlers.record_inbound_message(session, OUTBOX, robot, "e1", Settings()) is None
        entry_id = handlers.record_inbound_message(session, OUTBOX, robot, "e2",
                                                   Settings(create_for_automated_senders=True))
        assert session.get(TimelineEntry, entry_id).snippet == "Hi there"
        assert recorded_events(session) == ["contact_created", "timeline_entry_added"]


def test_our_own_addresses_come_from_inbox_updates_and_never_become_contacts(database):
    with database.transaction() as session:
        handlers.apply_inbox_update(session, inbox_update("i1", "Sales@Team.example"))
    with database.transaction() as session:
        assert handlers.own_addresses(session) == {"sales@team.example"}
        assert handlers.record_inbound_message(session, OUTBOX, message("sales@team.example"), "e1",
                                               Settings()) is None
        assert handlers.find_contact_by_email(session, "sales@team.example") is None


def test_creating_a_contact_normalises_its_addresses_and_refuses_taken_or_invalid_ones(database):
    with database.transaction() as session:
        contact = handlers.create_contact(session, OUTBOX, "Bea", ["Bea@Example.com", "b@example.com"])
        assert [e.email for e in contact.emails] == ["bea@example.com", "b@example.com"]
        assert recorded_events(session) == ["contact_created"]
    with database.transaction() as session, pytest.raises(Conflict, match="b@example.com"):
        handlers.create_contact(session, OUTBOX, None, ["new@example.com", "B@EXAMPLE.COM"])
    with database.transaction() as session, pytest.raises(HttpError, match="not a valid email address"):
        handlers.create_contact(session, OUTBOX, None, ["not-an-address"])
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Contact)) == 1


def recorded(session, event_type):
    return [row.envelope["data"] for row in session.execute(select(outbox).order_by(outbox.c.id))
            if row.event_type == event_type]


def test_a_contact_created_with_several_addresses_is_announced_with_all_of_them(database):
    with database.transaction() as session:
        contact = handlers.create_contact(session, OUTBOX, "Bea", ["Bea@Example.com", "b@example.com",
                                                                   "BEA@example.com"])
        assert [e.email for e in contact.emails] == ["bea@example.com", "b@example.com"]
        [created] = recorded(session, "contact_created")
        assert created == {"contact_id": contact.id, "name": "Bea", "emails": ["bea@example.com", "b@example.com"],
                           "created_from": "api"}


def test_adding_removing_and_renaming_announce_contact_updated_with_every_address(database):
    with database.transaction() as session:
        bea = handlers.create_contact(session, OUTBOX, "Bea", ["bea@example.com"])
        other = handlers.create_contact(session, OUTBOX, "Cy", ["cy@example.com"])
    with database.transaction() as session:
        contact, added = handlers.add_email(session, OUTBOX, bea.id, "Bea.Work@Example.com", "agent-1")
        assert added and [e.email for e in contact.emails] == ["bea@example.com", "bea.work@example.com"]
        assert handlers.add_email(session, OUTBOX, bea.id, "bea.work@example.com", "agent-1")[1] is False
        with pytest.raises(Conflict) as taken:
            handlers.add_email(session, OUTBOX, bea.id, "CY@example.com", "agent-1")
        assert taken.value.details == {"email": "cy@example.com", "contact_id": other.id}
        assert other.id in taken.value.message
        handlers.remove_email(session, OUTBOX, bea.id, "BEA@example.com", "agent-2")
        handlers.rename(session, OUTBOX, bea.id, "  Beatrice ", "agent-3")
        handlers.rename(session, OUTBOX, bea.id, "Beatrice", "agent-3")  # no change: no event
        updates = recorded(session, "contact_updated")
    assert updates == [
        {"contact_id": bea.id, "name": "Bea", "emails": ["bea@example.com", "bea.work@example.com"],
         "added": ["bea.work@example.com"], "removed": [], "previous_name": "Bea", "updated_by": "agent-1"},
        {"contact_id": bea.id, "name": "Bea", "emails": ["bea.work@example.com"], "added": [],
         "removed": ["bea@example.com"], "previous_name": "Bea", "updated_by": "agent-2"},
        {"contact_id": bea.id, "name": "Beatrice", "emails": ["bea.work@example.com"], "added": [], "removed": [],
         "previous_name": "Bea", "updated_by": "agent-3"}]
    with database.transaction() as session, pytest.raises(Conflict, match="last address"):
        handlers.remove_email(session, OUTBOX, bea.id, "bea.work@example.com", "agent-1")
    with database.transaction() as session, pytest.raises(NotFound):
        handlers.remove_email(session, OUTBOX, bea.id, "cy@example.com", "agent-1")
    with database.transaction() as session, pytest.raises(NotFound):
        handlers.add_email(session, OUTBOX, "no-such-contact", "z@example.com", "agent-1")
    with database.transaction() as session, pytest.raises(HttpError, match="not a valid email address"):
        handlers.add_email(session, OUTBOX, bea.id, "nope", "agent-1")


def test_an_address_an_inbound_message_took_meanwhile_is_a_409_naming_its_contact(database):
    """The unique address row decides when the pre-check did not see the other contact yet."""
    with database.transaction() as session:
        bea = handlers.create_contact(session, OUTBOX, "Bea", ["bea@example.com"])
    with database.transaction() as session:
        ada, _ = handlers.resolve_or_create(session, OUTBOX, "ada@example.com", "Ada", "event-1")
    with database.transaction() as session, pytest.raises(Conflict) as taken:
        handlers._insert_addresses(session, bea.id, ["ada@example.com"])
    assert taken.value.details == {"email": "ada@example.com", "contact_id": ada.id}


def test_inbound_attachment_links_on_the_timeline_carry_a_download_token_for_the_caller(database, monkeypatch):
    monkeypatch.setenv("MAILROOM_JWT_SECRET", "contacts-unit-test-secret-0123456789abcdef")
    from contacts import queries
    from mailroom_shared.auth import Principal, verify_blob_access

    attachment = {"filename": "a.pdf", "content_type": "application/pdf", "size": 3, "sha256": "ab" * 32,
                  "url": "/api/ingest/messages/m1/attachments/" + "ab" * 32}
    inbound = message("ada@example.com", intake_id="m1", attachments=[attachment])
    with database.transaction() as session:
        handlers.apply_inbox_update(session, inbox_update("i1", "support@team.example"))
        handlers.record_inbound_message(session, OUTBOX, inbound, "e1", Settings())
        handlers.record_outbound_email(session, OUTBOX, {**sent_email("ada@example.com"), "attachments": [
            {**attachment, "url": "/api/outbound/emails/x/attachments/y"}]}, "e2")
        contact = handlers.find_contact_by_email(session, "ada@example.com")
        page = queries.timeline_page(session, contact.id, None, 10, Principal("agent-1"))
    by_direction = {item["direction"]: item["attachments"][0]["url"] for item in page["items"]}
    url, token = by_direction["in"].split("?access=")
    assert url == attachment["url"] and verify_blob_access(token, "m1") == "agent-1"
    assert by_direction["out"] == "/api/outbound/emails/x/attachments/y"  # outbound checks the caller itself


def test_a_sent_email_is_on_the_timeline_of_each_recipient_once_but_not_of_our_inboxes(database):
    with database.transaction() as session:
        handlers.apply_inbox_update(session, inbox_update("i2", "sales@team.example"))
    email = sent_email("ada@example.com", "sales@team.example", "support@team.example")
    with database.transaction() as session:
        [entry_id] = handlers.record_outbound_email(session, OUTBOX, email, "e1")
        entry = session.get(TimelineEntry, entry_id)
        assert (entry.direction, entry.channel_address, entry.snippet, entry.intake_id) == (
            "out", "support@team.example", "Thanks, we", f"outbound:{email['email_id']}")
        assert entry.attachments == [{"filename": "a.pdf", "content_type": None, "size": 1, "sha256": None,
                                      "url": None}]
        assert handlers.find_contact_by_email(session, "ada@example.com").name == "Ada"
    with database.transaction() as session:  # the same email again: nothing new
        assert handlers.record_outbound_email(session, OUTBOX, email, "e2") == []
        assert session.scalar(select(func.count()).select_from(TimelineEntry)) == 1
        assert session.scalar(select(func.count()).select_from(ContactEmail)) == 1


class Relay:
    def __init__(self):
        self.woken = 0

    def wake(self):
        self.woken += 1


def envelope(source, event, data):
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "source": f"mailroom/{source}",
            "type": f"mailroom.{event}.v1", "time": "2026-11-25T10:00:00+00:00", "subject": "s",
            "datacontenttype": "application/json", "data": data}


@pytest.fixture
def service(database):
    service = ContactsService()
    service.db, service.relay, service.settings = database, Relay(), Settings()
    service.own_addresses = handlers.OwnAddresses(ttl=3600)  # only a drop refreshes it in this test
    return service


def test_an_inbox_update_drops_the_cached_own_addresses_once_committed(service, database):
    with database.transaction() as session:
        assert service.own_addresses.get(session) == frozenset()  # cached, empty

    service.handle_inbox_updated(envelope("conversations", "inbox_updated", inbox_update("i3", "vip@team.example")))

    with database.transaction() as session:
        assert service.own_addresses.get(session) == {"vip@team.example"}
    service.handle_message_received(envelope("ingest", "message_received", message("vip@team.example")))
    with database.transaction() as session:
        assert handlers.find_contact_by_email(session, "vip@team.example") is None
    assert service.relay.woken == 2


def test_a_cached_own_address_is_not_dropped_when_the_update_rolls_back(service, database):
    with database.transaction() as session:
        assert service.own_addresses.get(session) == frozenset()  # cached, empty
    with database.transaction() as session:  # a change this process has not heard of
        handlers.apply_inbox_update(session, inbox_update("i4", "late@team.example"))

    class Boom(Exception):
        pass

    with pytest.raises(Boom), database.transaction() as session:
        ContactsService.handle_inbox_updated.__wrapped__(service, session, inbox_update("i5", "x@team.example"), {})
        raise Boom  # e.g. another event of the same group commit failed: the batch rolls back

    with database.transaction() as session:
        assert service.own_addresses.get(session) == frozenset()  # not dropped: still the cached value


def test_a_change_postgresql_aborted_to_break_a_deadlock_is_run_again_then_answered_503(database):
    from sqlalchemy.exc import OperationalError

    from mailroom_shared.http import ServiceUnavailable

    class Orig(Exception):
        def __init__(self, pgcode):
            self.pgcode = pgcode

    calls = []

    def deadlocked_once(session):
        calls.append(session)
        if len(calls) == 1:
            raise OperationalError("INSERT", {}, Orig("40P01"))
        return handlers.create_contact(session, OUTBOX, "Dee", ["dee@example.com"]).id

    contact_id = handlers.in_transaction(database, deadlocked_once)
    assert len(calls) == 2
    with database.transaction() as session:
        assert session.get(Contact, contact_id) is not None

    def always(session):
        raise OperationalError("INSERT", {}, Orig("40P01"))

    with pytest.raises(ServiceUnavailable):
        handlers.in_transaction(database, always)

    def other_error(session):
        raise OperationalError("INSERT", {}, Orig("08006"))  # a lost connection is not retried here

    with pytest.raises(OperationalError):
        handlers.in_transaction(database, other_error)
