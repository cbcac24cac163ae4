"""conversations' call_logged (docs/calls.md): the call goes on the contact's timeline (an entry of
kind `call`, linked to its conversation, visible to those who may see its inbox) and its number
becomes the contact's phone identity, unless another contact already has it (never taken from
them: the unique identity row decides, as in channel_contacts.py).

Whom the call was with: the conversation's contact (`contact_id`), else the contact of its address,
else (a conversation whose contact conversations did not know yet) the contact with that number,
created if none. A contact named by id that is gone (merged away, erased) is looked for by address
only: a call never brings an erased person back."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from contacts import channel_contacts, handlers
from contacts.domain.timeline import (
    CALL,
    call_details,
    call_entry_direction,
    call_key,
    call_link_id,
    call_subject,
)
from contacts.models import Contact, ContactIdentity, TimelineEntry
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.db import conflict_insert, parse_time
from mailroom_shared.identities import PHONE, label, try_normalise_identity
from mailroom_shared.messaging.nameko_adapters import PoisonMessage
from mailroom_shared.messaging.outbox import Outbox

log = logging.getLogger(__name__)


def _contact_of(session: Session, outbox: Outbox, data: dict, phone: str, event_id: str) -> Contact | None:
    if data.get("contact_id"):
        contact = session.get(Contact, data["contact_id"])
        if contact is not None:
            return contact
    email = try_normalise_email(data.get("contact_email"))
    if email:
        contact = handlers.find_contact_by_email(session, email)
        if contact is not None:
            return contact
    if data.get("contact_id"):
        return None  # merged away or erased, and its address is no one's now
    contact, _ = channel_contacts.resolve_or_create_by_identity(session, outbox, PHONE, phone,
                                                                data.get("contact_name"), event_id)
    return contact


def learn_phone(session: Session, contact: Contact, phone: str) -> bool:
    """The number becomes the contact's phone identity if no contact has it (race-safe: the
    unique (kind, value) row; a concurrent claim wins and this adds nothing). True if added."""
    added = session.execute(conflict_insert(session, ContactIdentity).values(
        contact_id=contact.id, kind=PHONE, value=phone).on_conflict_do_nothing()).rowcount
    return bool(added)


def record_call(session: Session, outbox: Outbox, data: dict, event_id: str) -> TimelineEntry | None:
    phone = try_normalise_identity(PHONE, data.get("phone_number") or "")
    if phone is None:
        raise PoisonMessage(f"not a phone number: {data.get('phone_number')!r}")
    contact = _contact_of(session, outbox, data, phone, event_id)
    if contact is None:
        log.info("call %s: its contact %s is gone; not logged", data["call_id"], data.get("contact_id"))
        return None
    learn_phone(session, contact, phone)
    link = call_link_id(data["call_id"])
    channel_contacts._link(session, link, data["conversation_id"])
    direction, key = call_entry_direction(data["direction"]), call_key(data["call_id"])
    existing = session.execute(select(TimelineEntry.id).where(
        TimelineEntry.contact_id == contact.id, TimelineEntry.direction == direction,
        TimelineEntry.rfc_message_id == key)).first()
    if existing is not None:
        return None
    entry = TimelineEntry(
        id=str(uuid.uuid4()), contact_id=contact.id, direction=direction, rfc_message_id=key, intake_id=link,
        channel_address=label(PHONE, phone),
        subject=call_subject(data["direction"], data["outcome"], data.get("duration_seconds") or 0),
        snippet=" ".join((data.get("notes") or "").split())[:200], attachments=[], forwarded_by=None,
        occurred_at=parse_time(data["called_at"]), inbox_id=data["inbox_id"], kind=CALL, call=call_details(data))
    session.add(entry)
    session.flush()
    outbox.record(session, "timeline_entry_added", contact.id, handlers.entry_added(
        entry.id, contact.id, direction, key, entry.subject, data["conversation_id"]))
    return entry
