"""Use cases for chat and form messages (docs/channels.md): the sender is resolved to a contact by
its chat identity (phone number, Messenger PSID, live-chat handle) or, for a form, by the
submitter's email address, created if new (race-safe: the unique identity row decides, as the
unique address row does for email), and the message is logged on the contact's timeline; our
chat replies are logged there too."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, lazyload

from contacts import handlers
from contacts.models import Contact, ContactIdentity, MessageConversation, TimelineEntry
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.db import conflict_insert, parse_time
from mailroom_shared.identities import KINDS, label, try_normalise_identity
from mailroom_shared.messaging.nameko_adapters import PoisonMessage
from mailroom_shared.messaging.outbox import Outbox


def find_contact_by_identity(session: Session, kind: str, value: str) -> Contact | None:
    return session.execute(
        select(Contact).join(ContactIdentity, ContactIdentity.contact_id == Contact.id)
        .where(ContactIdentity.kind == kind, ContactIdentity.value == value).options(lazyload(Contact.emails))
    ).scalar_one_or_none()


def resolve_or_create_by_identity(session: Session, outbox: Outbox, kind: str, value: str, name: str | None,
                                  created_from: str) -> tuple[Contact, bool]:
    """The contact with this (normalised) identity, created if none. The loser of a race rolls
    back its savepoint and reads the winner's contact."""
    existing = find_contact_by_identity(session, kind, value)
    if existing:
        if name and not existing.name:
            existing.name = name
        return existing, False
    contact = Contact(id=str(uuid.uuid4()), name=name, created_from=created_from, created_at=dt.datetime.now(dt.UTC))
    try:
        with session.begin_nested():
            session.add(contact)
            session.add(ContactIdentity(contact_id=contact.id, kind=kind, value=value))
            session.flush()
    except IntegrityError:
        winner = find_contact_by_identity(session, kind, value)
        if winner is None:  # pragma: no cover - the unique row must exist after the conflict
            raise
        return winner, False
    outbox.record(session, "contact_created", contact.id, {
        "contact_id": contact.id, "name": name, "emails": [], "created_from": created_from,
        "identities": [{"kind": kind, "value": value}]})
    return contact, True


def _identity(data: dict) -> tuple[str, str]:
    identity = data.get("identity") or {}
    kind = identity.get("kind")
    value = try_normalise_identity(kind, identity.get("value") or "") if kind in KINDS else None
    if value is None:
        raise PoisonMessage(f"not a chat identity: {identity!r}")
    return kind, value


def _link(session: Session, link_id: str, conversation_id: str) -> None:
    """The timeline's link to the conversation (message_conversations, as for email)."""
    session.execute(conflict_insert(session, MessageConversation).values(
        intake_id=link_id, conversation_id=conversation_id).on_conflict_do_nothing())


def _log(session: Session, outbox: Outbox, contact: Contact, direction: str, key: str, link_id: str, data: dict,
         channel_label: str, text: str, occurred_at) -> TimelineEntry | None:
    """One entry per contact, direction and message key (a redelivery adds nothing)."""
    existing = session.execute(select(TimelineEntry.id).where(
        TimelineEntry.contact_id == contact.id, TimelineEntry.direction == direction,
        TimelineEntry.rfc_message_id == key)).first()
    if existing is not None:
        return None
    entry = TimelineEntry(
        id=str(uuid.uuid4()), contact_id=contact.id, direction=direction, rfc_message_id=key, intake_id=link_id,
        channel_address=channel_label, subject=data.get("subject") or "", snippet=text,
        attachments=[{k: a.get(k) for k in ("filename", "content_type", "size", "url")}
                     for a in data.get("attachments") or []],
        forwarded_by=None, occurred_at=parse_time(occurred_at), inbox_id=data["inbox_id"])
    session.add(entry)
    session.flush()
    outbox.record(session, "timeline_entry_added", contact.id, handlers.entry_added(
        entry.id, contact.id, direction, key, entry.subject, data["conversation_id"]))
    return entry


def record_channel_message(session: Session, outbox: Outbox, data: dict, event_id: str,
                           own: handlers.OwnAddresses | None = None) -> TimelineEntry | None:
    """conversations' channel_message_received: a chat sender by identity, a form's submitter by
    email (never one of our own inbox addresses), and the message on their timeline."""
    if data["channel_type"] == "chat":
        kind, value = _identity(data)
        contact, _ = resolve_or_create_by_identity(session, outbox, kind, value, data.get("name"), event_id)
    else:
        email = try_normalise_email(data.get("email"))
        if email is None or email in (own or handlers.OwnAddresses(ttl=0)).get(session):
            return None
        contact, _ = handlers.resolve_or_create(session, outbox, email, data.get("name"), created_from=event_id)
    link = f"channel:{data['message_id']}"
    _link(session, link, data["conversation_id"])
    return _log(session, outbox, contact, "in", data["rfc_message_id"], link, data,
                data.get("channel_label") or data["channel_type"], data.get("snippet") or "", data["received_at"])


def record_chat_sent(session: Session, outbox: Outbox, data: dict, event_id: str) -> TimelineEntry | None:
    """outbound's chat_message_sent: our reply on the timeline of the contact it went to."""
    kind, value = _identity(data)
    contact, _ = resolve_or_create_by_identity(session, outbox, kind, value, None, event_id)
    link = f"outbound-chat:{data['chat_message_id']}"
    _link(session, link, data["conversation_id"])
    snippet = " ".join((data.get("text") or "").split())[:200]
    return _log(session, outbox, contact, "out", f"{data['chat_message_id']}@chat-reply.mailroom.invalid", link,
                {**data, "subject": data.get("subject") or ""}, label(kind, value), snippet, data["sent_at"])
