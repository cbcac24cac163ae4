"""Use cases of the contacts service (the write side). Each takes a SQLAlchemy session (the unit
of work) and, where it records events, the service's outbox; service.py calls them inside one
transaction."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, lazyload

from contacts.domain.senders import decide_contact
from contacts.domain.timeline import outbound_link_id, sender_of, sent_to, timeline_attachments
from contacts.models import (
    Contact,
    ContactEmail,
    HeldMessage,
    InboxAccess,
    MessageConversation,
    OwnAddress,
    TimelineEntry,
)
from contacts.settings import Settings
from mailroom_shared.addresses import InvalidAddress, normalise_email, try_normalise_email
from mailroom_shared.caching import Expiring
from mailroom_shared.db import conflict_insert, parse_time
from mailroom_shared.http import Conflict, HttpError
from mailroom_shared.messaging.outbox import Outbox
from mailroom_shared.text import snippet


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
    outbox.record(session, "contact_created", contact.id, {
        "contact_id": contact.id, "name": name, "emails": [email], "created_from": created_from,
    })
    return contact, True


def create_contact(session: Session, outbox: Outbox, name: str | None, emails: list[str]) -> Contact:
    """`POST /api/contacts`: a contact with these addresses (the first is its main one). 400 for
    an address that is not one, 409 when one already belongs to a contact."""
    try:
        normalised = [normalise_email(e) for e in emails]
    except InvalidAddress as exc:
        raise HttpError(str(exc)) from exc
    for email in normalised:
        if find_contact_by_email(session, email):
            raise Conflict(f"{email} already belongs to a contact")
    contact, _ = resolve_or_create(session, outbox, normalised[0], name, "api")
    for extra in normalised[1:]:
        session.add(ContactEmail(contact_id=contact.id, email=extra))
    session.flush()
    return contact


def record_inbound_message(session: Session, outbox: Outbox, data: dict, event_id: str,
                           settings: Settings, own: OwnAddresses | None = None) -> TimelineEntry | None:
    """ingest's message_received: the sender's contact (created if new) gets the message on its
    timeline, unless the domain rules say no contact (spam is held back for later)."""
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
    contact, created = resolve_or_create(session, outbox, decision.email, decision.name, created_from=event_id)
    return log_inbound(session, outbox, contact, data, new_contact=created)


def log_inbound(session: Session, outbox: Outbox, contact: Contact, data: dict,
                new_contact: bool = False) -> TimelineEntry:
    """The timeline entry of an inbound message (once per contact and Message-ID)."""
    if not new_contact:  # a contact created a moment ago has no timeline yet
        entry = session.execute(select(TimelineEntry).where(
            TimelineEntry.contact_id == contact.id, TimelineEntry.direction == "in",
            TimelineEntry.rfc_message_id == data["message_id"])).scalar_one_or_none()
        if entry:  # the same email again (e.g. re-ingested through another path)
            return entry
    forward = data.get("forward")
    entry = TimelineEntry(
        id=str(uuid.uuid4()), contact_id=contact.id, direction="in", rfc_message_id=data["message_id"],
        intake_id=data.get("intake_id"), channel_address=data.get("channel_address"),
        subject=data.get("subject") or "",
        snippet=data.get("snippet") or snippet(data.get("text"), data.get("html")),
        attachments=timeline_attachments(data.get("attachments")),
        forwarded_by=(forward or {}).get("forwarded_by") if forward and forward.get("trusted") else None,
        occurred_at=parse_time(data.get("received_at")),
    )
    session.add(entry)
    outbox.record(session, "timeline_entry_added", contact.id, {
        "entry_id": entry.id, "contact_id": contact.id, "direction": "in",
        "message_id": data["message_id"], "subject": entry.subject, "conversation_id": None,
    })
    return entry


def _hold(session: Session, data: dict) -> None:
    attributed = data.get("attributed_to") or {}
    email = try_normalise_email(attributed.get("email"))
    if email is None or not data.get("intake_id"):
        return
    kept = {k: v for k, v in data.items() if k not in ("text", "html")}
    kept["snippet"] = snippet(data.get("text"), data.get("html"))
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


def link_conversation(session: Session, intake_id: str | None, conversation_id: str) -> None:
    """conversations' message_added: which conversation an inbound message is in (the timeline
    shows it, whichever of the two events arrives first)."""
    if not intake_id:
        return
    # one upsert (was a read then a write); a move or re-thread: the latest conversation wins
    statement = conflict_insert(session, MessageConversation).values(intake_id=intake_id,
                                                                     conversation_id=conversation_id)
    session.execute(statement.on_conflict_do_update(
        index_elements=[MessageConversation.intake_id], set_={"conversation_id": conversation_id}))


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
    outbox.record(session, "timeline_entry_added", contact.id, {
        "entry_id": entry.id, "contact_id": contact.id, "direction": "in", "message_id": entry.rfc_message_id,
        "subject": entry.subject, "conversation_id": data.get("conversation_id")})
    return entry


def record_outbound_email(session: Session, outbox: Outbox, data: dict, event_id: str) -> list[TimelineEntry]:
    """outbound's email_sent (issue #4): the email, with its attachments, on the timeline of every
    recipient (To, CC and BCC), creating contacts as needed. Our own inbox addresses (a forward
    to another team's inbox) never become contacts."""
    link = outbound_link_id(data["email_id"])
    if session.get(MessageConversation, link) is None:
        session.add(MessageConversation(intake_id=link, conversation_id=data["conversation_id"]))
    sender = sender_of(data)
    entries = []
    for email, name in sent_to(data, sender, own_addresses(session)):
        contact, _ = resolve_or_create(session, outbox, email, name, created_from=event_id)
        existing = session.execute(select(TimelineEntry).where(
            TimelineEntry.contact_id == contact.id, TimelineEntry.direction == "out",
            TimelineEntry.rfc_message_id == data["rfc_message_id"])).scalar_one_or_none()
        if existing is not None:
            continue
        entry = TimelineEntry(
            id=str(uuid.uuid4()), contact_id=contact.id, direction="out", rfc_message_id=data["rfc_message_id"],
            intake_id=link, channel_address=sender, subject=data.get("subject") or "",
            snippet=snippet(data.get("text"), data.get("html")),
            attachments=timeline_attachments(data.get("attachments")),
            forwarded_by=None, occurred_at=parse_time(data.get("sent_at")))
        session.add(entry)
        session.flush()
        outbox.record(session, "timeline_entry_added", contact.id, {
            "entry_id": entry.id, "contact_id": contact.id, "direction": "out",
            "message_id": data["rfc_message_id"], "subject": entry.subject,
            "conversation_id": data["conversation_id"]})
        entries.append(entry)
    return entries
