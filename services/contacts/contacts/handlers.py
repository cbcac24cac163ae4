"""Use cases of the contacts service (the write side). Each takes a SQLAlchemy session (the unit
of work) and, where it records events, the service's outbox; service.py calls them inside one
transaction."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import JSON, DateTime, bindparam, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, lazyload

from contacts.domain.senders import decide_contact
from contacts.domain.timeline import entry_snippet, outbound_link_id, sender_of, sent_to, timeline_attachments
from contacts.models import (
    Contact,
    ContactEmail,
    HeldMessage,
    InboxAccess,
    OwnAddress,
    TimelineEntry,
    TimelineEntryChannel,
)
from contacts.settings import Settings
from mailroom_shared.addresses import InvalidAddress, normalise_email, try_normalise_email
from mailroom_shared.caching import Expiring
from mailroom_shared.db import Database, conflict_insert, is_postgres, parse_time
from mailroom_shared.http import Conflict, HttpError, NotFound, ServiceUnavailable, get_or_404
from mailroom_shared.messaging.outbox import Outbox

T = TypeVar("T")
DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE


def own_addresses(session: Session) -> frozenset[str]:
    """Our inboxes' channel addresses (from inbox_updated): never made into contacts."""
    return frozenset(session.execute(select(OwnAddress.email)).scalars())


class OwnAddresses:
    """`own_addresses`, re-read at most every `ttl` seconds (one query per message otherwise;
    ingest's InboxDirectory does the same). A change from inbox_updated is seen at once in the
    process that applied it (`forget`, after its commit) and within `ttl` in other replicas."""

    def __init__(self, ttl: float = 2.0):
        self._addresses = Expiring(ttl, frozenset())

    def get(self, session: Session) -> frozenset[str]:
        return self._addresses.get(lambda: own_addresses(session))

    def forget(self) -> None:
        self._addresses.forget()


def find_contact_by_email(session: Session, email: str) -> Contact | None:
    # lazyload: the handlers never read a contact's addresses (the relationship's selectin
    # default would cost one more query per message)
    return session.execute(
        select(Contact).join(ContactEmail).where(ContactEmail.email == email).options(lazyload(Contact.emails))
    ).scalar_one_or_none()


def resolve_or_create(session: Session, outbox: Outbox, email: str, name: str | None,
                      created_from: str) -> tuple[Contact, bool]:
    """The contact for a normalised address, created if none. Race-safe: the unique address
    row decides; the loser of a race rolls back its savepoint and reads the winner's contact."""
    existing = find_contact_by_email(session, email)
    if existing:
        if name and not existing.name:
            existing.name = name
        return existing, False
    contact = Contact(id=str(uuid.uuid4()), name=name, created_from=created_from,
                      created_at=dt.datetime.now(dt.UTC))
    try:
        with session.begin_nested():
            session.add(contact)
            session.add(ContactEmail(contact_id=contact.id, email=email))
            session.flush()
    except IntegrityError:
        winner = find_contact_by_email(session, email)
        if winner is None:  # pragma: no cover - the unique row must exist after the conflict
            raise
        return winner, False
    outbox.record(session, *_contact_created(contact.id, name, email, created_from))
    return contact, True


# --- the HTTP API's changes (any signed-in user: contacts are account-wide) ----------------------
# An address belongs to one contact (the unique contact_emails.email decides). Two requests
# adding the same address take turns (PostgreSQL: a transaction-scoped advisory lock per address,
# taken in one order, so two requests never wait for each other in a circle); the second then
# finds the first's contact and answers 409 naming it. An address taken at the same moment by an
# inbound message's new contact (which takes no lock) is found by the unique index: 409 too.

DEADLOCK_ATTEMPTS = 3


def in_transaction(database: Database, change: Callable[[Session], T]) -> T:
    """`change(session)` in a transaction of its own, run again when PostgreSQL broke a circular
    wait by aborting it (40P01: e.g. an inbound message's group commit creating contacts for two
    of the same addresses in the other order); 503 "try again" if it keeps happening."""
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            with database.transaction() as session:
                return change(session)
        except OperationalError as exc:
            if getattr(exc.orig, "pgcode", None) != DEADLOCK_DETECTED:
                raise
            if attempt == DEADLOCK_ATTEMPTS:
                raise ServiceUnavailable("the contact was being changed by another request; try again") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _normalised(emails: list[str]) -> list[str]:
    """The addresses normalised (400 for one that is not an address), each once, in order."""
    try:
        return list(dict.fromkeys(normalise_email(e) for e in emails))
    except InvalidAddress as exc:
        raise HttpError(str(exc)) from exc


def _address_lock_key(email: str) -> int:
    digest = hashlib.blake2b(f"contacts.address\n{email}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _take_turns(session: Session, emails: list[str]) -> None:
    """Wait for every other transaction changing one of these addresses (PostgreSQL; SQLite
    writes one transaction at a time anyway)."""
    if is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(k) FROM (SELECT unnest(CAST(:keys AS bigint[])) AS k "
                             "ORDER BY 1) AS ordered"), {"keys": sorted({_address_lock_key(e) for e in emails})})


def _owner_of(session: Session, email: str) -> str | None:
    return session.execute(select(ContactEmail.contact_id).where(ContactEmail.email == email)).scalar_one_or_none()


def _taken(email: str, owner: str | None) -> Conflict:
    if owner is None:  # its holder let it go again meanwhile
        return Conflict(f"{email} was being given to another contact at the same moment; try again",
                        {"email": email})
    return Conflict(f"{email} already belongs to contact {owner}", {"email": email, "contact_id": owner})


def _refuse_taken(session: Session, emails: list[str], contact_id: str | None = None) -> None:
    """409 naming the contact that holds one of `emails` (other than `contact_id`)."""
    for email in emails:
        owner = _owner_of(session, email)
        if owner is not None and owner != contact_id:
            raise _taken(email, owner)


def _insert_addresses(session: Session, contact_id: str, emails: list[str]) -> None:
    """The rows of new addresses, in order (the first of a new contact is its main address); the
    unique index refuses one that another transaction took meanwhile: 409 naming its holder."""
    for email in emails:
        try:
            with session.begin_nested():
                session.add(ContactEmail(contact_id=contact_id, email=email))
                session.flush()
        except IntegrityError:
            raise _taken(email, _owner_of(session, email)) from None


def create_contact(session: Session, outbox: Outbox, name: str | None, emails: list[str]) -> Contact:
    """`POST /api/contacts`: a contact with these addresses (the first is its main one), announced
    with all of them. 400 for an address that is not one, 409 naming the contact that already
    has one."""
    normalised = _normalised(emails)
    _take_turns(session, normalised)
    _refuse_taken(session, normalised)
    contact = Contact(id=str(uuid.uuid4()), name=name, created_from="api", created_at=dt.datetime.now(dt.UTC))
    session.add(contact)
    session.flush()
    _insert_addresses(session, contact.id, normalised)
    session.expire(contact, ["emails"])
    outbox.record(session, "contact_created", contact.id, {
        "contact_id": contact.id, "name": name, "emails": normalised, "created_from": "api"})
    return contact


def add_email(session: Session, outbox: Outbox, contact_id: str, email: str, user_id: str) -> tuple[Contact, bool]:
    """`POST /api/contacts/{id}/emails`: the address is the contact's (True: added now, with
    contact_updated; False: it already was). 409 naming the contact that has it."""
    [address] = _normalised([email])
    _take_turns(session, [address])
    contact = get_or_404(session, Contact, contact_id, "contact")
    owner = _owner_of(session, address)
    if owner == contact.id:
        return contact, False
    if owner is not None:
        raise _taken(address, owner)
    _insert_addresses(session, contact.id, [address])
    _updated(session, outbox, contact, user_id, contact.name, added=[address])
    return contact, True


def remove_email(session: Session, outbox: Outbox, contact_id: str, email: str, user_id: str) -> Contact:
    """`DELETE /api/contacts/{id}/emails/{email}`: 404 when the contact does not have it, 409 for
    its last address (a contact keeps one)."""
    contact = get_or_404(session, Contact, contact_id, "contact")
    # the contact's row locked: two removals of its last two addresses would each see the other
    # one left and leave it with none (merge and erase take the same lock)
    session.execute(select(Contact.id).where(Contact.id == contact.id).with_for_update())
    address = try_normalise_email(email)
    row = session.execute(select(ContactEmail).where(
        ContactEmail.contact_id == contact.id, ContactEmail.email == address).with_for_update()).scalar_one_or_none()
    if row is None:
        raise NotFound(f"contact {contact_id} has no address {email}")
    others = session.execute(select(ContactEmail.id).where(
        ContactEmail.contact_id == contact.id, ContactEmail.id != row.id).limit(1)).first()
    if others is None:
        raise Conflict(f"{address} is the last address of contact {contact_id}: a contact keeps at least one")
    session.delete(row)
    session.flush()
    _updated(session, outbox, contact, user_id, contact.name, removed=[address])
    return contact


def rename(session: Session, outbox: Outbox, contact_id: str, name: str | None, user_id: str) -> Contact:
    """`PATCH /api/contacts/{id}`: the contact's name (None clears it); contact_updated if it changed."""
    contact = get_or_404(session, Contact, contact_id, "contact")
    name = (name or "").strip() or None
    if name != contact.name:
        previous, contact.name = contact.name, name
        session.flush()
        _updated(session, outbox, contact, user_id, previous)
    return contact


def _updated(session: Session, outbox: Outbox, contact: Contact, user_id: str, previous_name: str | None, *,
             added: list[str] = (), removed: list[str] = ()) -> None:
    """contact_updated with every address the contact has now (and what changed)."""
    session.expire(contact, ["emails"])  # read its addresses again, as they are now
    outbox.record(session, "contact_updated", contact.id, {
        "contact_id": contact.id, "name": contact.name, "emails": [e.email for e in contact.emails],
        "added": list(added), "removed": list(removed), "previous_name": previous_name, "updated_by": user_id})


def record_inbound_message(session: Session, outbox: Outbox, data: dict, event_id: str,
                           settings: Settings, own: OwnAddresses | None = None) -> str | None:
    """ingest's message_received: the sender's contact (created if new) gets the message on its
    timeline, unless the domain rules say no contact (spam is held back for later). Returns the
    id of the message's timeline entry (None: no contact)."""
    flags = data.get("flags") or {}
    decision = decide_contact(
        data.get("attributed_to"), own_addresses=(own or OwnAddresses(ttl=0)).get(session),
        spam=bool(flags.get("spam")), loop=bool(flags.get("loop")),
        create_for_automated=settings.create_for_automated_senders,
    )
    if decision.email is None:
        if decision.held_back:
            _hold(session, data)
        return None
    if is_postgres(session):
        return _record_inbound_in_one_statement(session, outbox, decision.email, decision.name, data, event_id)
    contact, created = resolve_or_create(session, outbox, decision.email, decision.name, created_from=event_id)
    return log_inbound(session, outbox, contact, data, new_contact=created).id


def _inbound_entry(data: dict) -> dict:
    """The columns of an inbound message's timeline entry that come from the message."""
    forward = data.get("forward")
    return {"rfc_message_id": data["message_id"], "intake_id": data.get("intake_id"),
            "channel_address": data.get("channel_address"), "subject": data.get("subject") or "",
            "snippet": data.get("snippet") or entry_snippet(data.get("text"), data.get("html")),
            "attachments": timeline_attachments(data.get("attachments")),
            "forwarded_by": forward.get("forwarded_by") if forward and forward.get("trusted") else None,
            "occurred_at": parse_time(data.get("received_at"))}


def log_inbound(session: Session, outbox: Outbox, contact: Contact, data: dict,
                new_contact: bool = False) -> TimelineEntry:
    """The timeline entry of an inbound message (once per contact and Message-ID)."""
    if not new_contact:  # a contact created a moment ago has no timeline yet
        entry = session.execute(select(TimelineEntry).where(
            TimelineEntry.contact_id == contact.id, TimelineEntry.direction == "in",
            TimelineEntry.rfc_message_id == data["message_id"])).scalar_one_or_none()
        if entry:  # the same email again (re-ingested through another path, or sent to another inbox too)
            _also_reached(session, entry.id, entry.channel_address, data.get("channel_address"))
            return entry
    entry = TimelineEntry(id=str(uuid.uuid4()), contact_id=contact.id, direction="in", **_inbound_entry(data))
    session.add(entry)
    outbox.record(session, "timeline_entry_added", contact.id,
                  entry_added(entry.id, contact.id, "in", data["message_id"], entry.subject, None))
    return entry


def entry_added(entry_id: str, contact_id: str, direction: str, message_id: str, subject: str,
                conversation_id: str | None) -> dict:
    """timeline_entry_added's data (every kind of entry: email in or out, chat, form, call)."""
    return {"entry_id": entry_id, "contact_id": contact_id, "direction": direction, "message_id": message_id,
            "subject": subject, "conversation_id": conversation_id}


# The PostgreSQL path of record_inbound_message and record_outbound_email (issue #16: the ORM's
# find, savepoint, inserts and flush were three to eight statements per message and recipient,
# each ~0.1-0.3 ms of SQLAlchemy): the contact found by its address, given the person's name if it
# had none, or created; and the email's timeline entry (in or out), unless that contact already
# has it. Race-safe as resolve_or_create: the unique address row decides; the loser of a race
# inserts nothing (ON CONFLICT DO NOTHING waits for the winner's commit) and runs the statement
# again, which then finds the winner's contact. The new contact's row comes after its address row
# in the statement: PostgreSQL checks foreign keys at the statement's end, and no contact row is
# made for an address that lost.
_RECORD_EMAIL = text("""
WITH found AS (
    SELECT contacts.id, contacts.name FROM contact_emails JOIN contacts ON contacts.id = contact_emails.contact_id
    WHERE contact_emails.email = :email
), named AS (
    UPDATE contacts SET name = :name FROM found
    WHERE contacts.id = found.id AND coalesce(found.name, '') = '' AND :name IS NOT NULL
), new_address AS (
    INSERT INTO contact_emails (contact_id, email) SELECT :new_contact_id, :email WHERE NOT EXISTS (SELECT FROM found)
    ON CONFLICT (email) DO NOTHING RETURNING contact_id
), new_contact AS (
    INSERT INTO contacts (id, name, created_from, created_at)
    SELECT contact_id, :name, :created_from, :now FROM new_address RETURNING id
), contact AS (
    SELECT id, false AS created FROM found UNION ALL SELECT id, true FROM new_contact
), entry AS (
    INSERT INTO timeline_entries (id, contact_id, direction, rfc_message_id, intake_id, channel_address, subject,
                                  snippet, attachments, forwarded_by, occurred_at, kind)
    SELECT :entry_id, contact.id, :direction, :rfc_message_id, :intake_id, :channel_address, :subject, :snippet,
           CAST(:attachments AS JSON), CAST(:forwarded_by AS JSON), :occurred_at, 'message' FROM contact
    ON CONFLICT (contact_id, direction, rfc_message_id) DO NOTHING RETURNING id
)
SELECT contact.id, contact.created, entry.id FROM contact LEFT JOIN entry ON true
""").bindparams(bindparam("attachments", type_=JSON), bindparam("forwarded_by", type_=JSON),
                bindparam("occurred_at", type_=DateTime(timezone=True)),
                bindparam("now", type_=DateTime(timezone=True)))
_RACE_ATTEMPTS = 3  # a lost race is followed by a find; more only if the winner's address went again meanwhile

_EXISTING_INBOUND_ENTRY = text("SELECT id, channel_address FROM timeline_entries WHERE contact_id = :contact_id "
                               "AND direction = 'in' AND rfc_message_id = :rfc_message_id")


def _record_email_in_one_statement(session: Session, email: str, name: str | None, direction: str,
                                   entry: dict, event_id: str) -> tuple[str, bool, str | None]:
    """(contact id, whether it was created now, the new entry's id or None if it had it already)."""
    values = {**entry, "direction": direction, "email": email, "name": name, "new_contact_id": str(uuid.uuid4()),
              "created_from": event_id, "now": dt.datetime.now(dt.UTC), "entry_id": str(uuid.uuid4())}
    for _attempt in range(_RACE_ATTEMPTS):
        row = session.execute(_RECORD_EMAIL, values).first()
        if row is not None:
            return tuple(row)
    raise RuntimeError(f"no contact could be found or created for {email}")  # pragma: no cover - lost every race


def _contact_created(contact_id: str, name: str | None, email: str, event_id: str) -> tuple[str, str, dict]:
    return "contact_created", contact_id, {"contact_id": contact_id, "name": name, "emails": [email],
                                           "created_from": event_id}


def _record_inbound_in_one_statement(session: Session, outbox: Outbox, email: str, name: str | None, data: dict,
                                     event_id: str) -> str:
    entry = _inbound_entry(data)
    contact_id, created, entry_id = _record_email_in_one_statement(session, email, name, "in", entry, event_id)
    events = [_contact_created(contact_id, name, email, event_id)] if created else []
    if entry_id is not None:
        events.append(("timeline_entry_added", contact_id,
                       entry_added(entry_id, contact_id, "in", data["message_id"], entry["subject"], None)))
    else:  # the same email again (re-ingested through another path, or sent to another inbox too)
        entry_id, first_address = session.execute(_EXISTING_INBOUND_ENTRY, {
            "contact_id": contact_id, "rfc_message_id": data["message_id"]}).one()
        _also_reached(session, entry_id, first_address, data.get("channel_address"))
    if events:
        outbox.record_many(session, events)
    return entry_id


def _also_reached(session: Session, entry_id: str, first_address: str | None, channel_address: str | None) -> None:
    """The same email reached another of our inbox addresses too: the one entry names it as well
    (timeline_entry_channels; docs/architecture.md, "One email to several team inboxes")."""
    address = try_normalise_email(channel_address)
    if address is None or address == try_normalise_email(first_address):
        return
    session.execute(conflict_insert(session, TimelineEntryChannel).values(
        entry_id=entry_id, channel_address=address).on_conflict_do_nothing())


def _hold(session: Session, data: dict) -> None:
    attributed = data.get("attributed_to") or {}
    email = try_normalise_email(attributed.get("email"))
    if email is None or not data.get("intake_id"):
        return
    kept = {k: v for k, v in data.items() if k not in ("text", "html")}
    kept["snippet"] = entry_snippet(data.get("text"), data.get("html"))
    session.merge(HeldMessage(intake_id=data["intake_id"], email=email, name=attributed.get("name"), data=kept))


def release_held(session: Session, outbox: Outbox, intake_ids: list[str], contact_email: str | None,
                 contact_name: str | None, event_id: str) -> Contact | None:
    """A conversation was marked not-spam: create the held-back contact and log its messages."""
    held = session.execute(select(HeldMessage).where(HeldMessage.intake_id.in_(intake_ids or [""]))).scalars().all()
    email = try_normalise_email(contact_email) or (held[0].email if held else None)
    if email is None:
        return None
    name = contact_name or next((h.name for h in held if h.name), None)
    contact, _ = resolve_or_create(session, outbox, email, name, created_from=event_id)
    for message in held:
        if message.email == email:
            log_inbound(session, outbox, contact, message.data)
        session.delete(message)
    return contact


# one upsert, written once (a statement built per call cost twice its execution in SQLAlchemy);
# PostgreSQL and SQLite both read it. A move or re-thread: the latest conversation wins.
_LINK_CONVERSATION = text("INSERT INTO message_conversations (intake_id, conversation_id) "
                          "VALUES (:intake_id, :conversation_id) "
                          "ON CONFLICT (intake_id) DO UPDATE SET conversation_id = excluded.conversation_id")


def link_conversation(session: Session, intake_id: str | None, conversation_id: str) -> None:
    """conversations' message_added: which conversation an inbound message is in (the timeline
    shows it, whichever of the two events arrives first)."""
    if intake_id:
        session.execute(_LINK_CONVERSATION, {"intake_id": intake_id, "conversation_id": conversation_id})


def apply_inbox_update(session: Session, data: dict) -> None:
    """Our copy of an inbox: its addresses (never contacts) and who may see its mail."""
    inbox_id = data["inbox_id"]
    session.query(OwnAddress).filter(OwnAddress.inbox_id == inbox_id).delete()
    for address in {a for a in (try_normalise_email(x) for x in data["channel_addresses"]) if a}:
        session.merge(OwnAddress(email=address, inbox_id=inbox_id))
    session.merge(InboxAccess(inbox_id=inbox_id, visibility=data.get("visibility") or "everyone",
                              member_user_ids=list(data.get("member_user_ids") or []),
                              team_ids=list(data.get("team_ids") or [])))


def move_attribution(session: Session, outbox: Outbox, data: dict, event_id: str) -> TimelineEntry | None:
    """conversations corrected whom a message belongs to: its inbound timeline entry moves to
    that person's contact (created if new). The entry keeps its id, subject and attachments."""
    email = try_normalise_email((data.get("attributed_to") or {}).get("email"))
    if email is None:
        return None
    entry = session.execute(select(TimelineEntry).where(
        TimelineEntry.direction == "in",
        (TimelineEntry.intake_id == data["intake_id"]) if data.get("intake_id")
        else (TimelineEntry.rfc_message_id == data["rfc_message_id"]))).scalars().first()
    contact, _ = resolve_or_create(session, outbox, email, data["attributed_to"].get("name"), created_from=event_id)
    if entry is None or entry.contact_id == contact.id:
        return entry
    clash = session.execute(select(TimelineEntry).where(
        TimelineEntry.contact_id == contact.id, TimelineEntry.direction == "in",
        TimelineEntry.rfc_message_id == entry.rfc_message_id)).scalar_one_or_none()
    if clash is not None:  # already on that contact's timeline: drop the wrong one
        session.delete(entry)
        return clash
    entry.contact_id = contact.id
    outbox.record(session, "timeline_entry_added", contact.id, entry_added(
        entry.id, contact.id, "in", entry.rfc_message_id, entry.subject, data.get("conversation_id")))
    return entry


# an email we sent links to its conversation once (a redelivered email_sent changes nothing)
_LINK_SENT_EMAIL = text("INSERT INTO message_conversations (intake_id, conversation_id) "
                        "VALUES (:intake_id, :conversation_id) ON CONFLICT (intake_id) DO NOTHING")


def record_outbound_email(session: Session, outbox: Outbox, data: dict, event_id: str,
                          own: OwnAddresses | None = None) -> list[str]:
    """outbound's email_sent (issue #4): the email, with its attachments, on the timeline of every
    recipient (To, CC and BCC), creating contacts as needed. Our own inbox addresses (a forward
    to another team's inbox) never become contacts. Returns the ids of the new timeline entries
    (none for an email already logged)."""
    link = outbound_link_id(data["email_id"])
    session.execute(_LINK_SENT_EMAIL, {"intake_id": link, "conversation_id": data["conversation_id"]})
    sender = sender_of(data)
    entry = {"rfc_message_id": data["rfc_message_id"], "intake_id": link, "channel_address": sender,
             "subject": data.get("subject") or "", "snippet": entry_snippet(data.get("text"), data.get("html")),
             "attachments": timeline_attachments(data.get("attachments")), "forwarded_by": None,
             "occurred_at": parse_time(data.get("sent_at"))}
    postgres = is_postgres(session)
    events, entry_ids = [], []
    for email, name in sent_to(data, sender, (own or OwnAddresses(ttl=0)).get(session)):
        if postgres:
            contact_id, created, entry_id = _record_email_in_one_statement(session, email, name, "out", entry,
                                                                           event_id)
            if created:
                events.append(_contact_created(contact_id, name, email, event_id))
        else:
            contact_id, entry_id = _record_outbound_with_the_orm(session, outbox, email, name, entry, event_id)
        if entry_id is None:  # this recipient has it already (email_sent redelivered)
            continue
        events.append(("timeline_entry_added", contact_id, entry_added(
            entry_id, contact_id, "out", data["rfc_message_id"], entry["subject"], data["conversation_id"])))
        entry_ids.append(entry_id)
    if events:
        outbox.record_many(session, events)
    return entry_ids


def _record_outbound_with_the_orm(session: Session, outbox: Outbox, email: str, name: str | None, entry: dict,
                                  event_id: str) -> tuple[str, str | None]:
    """SQLite's way (the embedded local run): the contact found or created, then the entry."""
    contact, _ = resolve_or_create(session, outbox, email, name, created_from=event_id)
    existing = session.execute(select(TimelineEntry.id).where(
        TimelineEntry.contact_id == contact.id, TimelineEntry.direction == "out",
        TimelineEntry.rfc_message_id == entry["rfc_message_id"])).scalar_one_or_none()
    if existing is not None:
        return contact.id, None
    timeline_entry = TimelineEntry(id=str(uuid.uuid4()), contact_id=contact.id, direction="out", **entry)
    session.add(timeline_entry)
    return contact.id, timeline_entry.id
