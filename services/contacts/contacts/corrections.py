"""Fixing contacts beyond a name and an address (issue #17): merging two contacts into one, and
erasing one on request (GDPR art. 17) with a report of what every service erased.

Merge: the survivor takes the merged contact's addresses, chat identities and timeline (an email
on both timelines is kept once); the merged contact is deleted; `contacts_merged` tells
conversations to re-point its conversations and known addresses. Future mail follows the
addresses, which are the survivor's now.

Erase: the contact, its addresses, identities, timeline and held-back spam are deleted in one
transaction with `contact_erased` (its addresses, identities and inbound intake ids: what the
other services need to find that person's data). Events about the person still in the outbox,
not relayed yet (a contact_created, a timeline_entry_added), are dropped in the same transaction:
they would only carry the person's data to the other services after the erasure. A contacts_merged
stays (conversations needs it to leave its redirect) and goes out before contact_erased, which
erases what it carried. Each erasing service (conversations, ingest, outbound, notifier) confirms
with its own event; the erasure row collects their counts (never the personal data itself).

Mail from an erased address that arrives after the erasure is new: a new contact is created for
it, as for any unknown sender (docs/architecture.md)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from contacts.handlers import _take_turns
from contacts.models import (
    Contact,
    ContactEmail,
    ContactErasure,
    ContactIdentity,
    HeldMessage,
    MessageConversation,
    TimelineEntry,
)
from mailroom_shared.erasure import drop_pending_events, erasure_keys
from mailroom_shared.http import Forbidden, HttpError, NotFound
from mailroom_shared.messaging.outbox import Outbox

# the services that hold a person's data besides contacts, and the event each confirms with
ERASING_SERVICES = {"conversations": "contact_messages_erased", "ingest": "contact_mail_erased",
                    "outbound": "contact_sent_mail_erased", "notifier": "contact_notifications_erased"}
KEPT_EVENTS = frozenset({"contacts_merged"})  # see above: not dropped by an erasure


def _locked(session: Session, contact_ids: list[str]) -> dict[str, Contact]:
    """The contacts, their rows locked in id order (two merges of the same pair in opposite
    directions wait for each other instead of deadlocking; the second then finds one gone: 404)."""
    found = {}
    for contact_id in sorted(set(contact_ids)):
        contact = session.execute(select(Contact).where(Contact.id == contact_id).with_for_update()
                                  ).scalar_one_or_none()
        if contact is None:
            raise NotFound(f"no contact {contact_id}")
        found[contact_id] = contact
    return found


def merge(session: Session, outbox: Outbox, survivor_id: str, merged_id: str, user_id: str) -> Contact:
    """`POST /api/contacts/{survivor_id}/merge` {contact_id: merged_id}."""
    if survivor_id == merged_id:
        raise HttpError("a contact cannot be merged into itself")
    contacts = _locked(session, [survivor_id, merged_id])
    survivor, merged = contacts[survivor_id], contacts[merged_id]
    merged_emails = list(session.execute(select(ContactEmail.email).where(
        ContactEmail.contact_id == merged_id).order_by(ContactEmail.id)).scalars())
    # the addresses take turns with the API's other address changes (handlers.py), then move as
    # new rows: addresses are listed by row id, so the survivor's main address stays first
    _take_turns(session, merged_emails)
    session.execute(delete(ContactEmail).where(ContactEmail.contact_id == merged_id))
    session.flush()
    session.add_all([ContactEmail(contact_id=survivor_id, email=email) for email in merged_emails])
    session.execute(update(ContactIdentity).where(ContactIdentity.contact_id == merged_id)
                    .values(contact_id=survivor_id))
    already = set(session.execute(select(TimelineEntry.direction, TimelineEntry.rfc_message_id).where(
        TimelineEntry.contact_id == survivor_id)).all())
    for entry in session.execute(select(TimelineEntry).where(TimelineEntry.contact_id == merged_id)).scalars():
        if (entry.direction, entry.rfc_message_id) in already:  # the same email on both timelines
            session.delete(entry)
        else:
            entry.contact_id = survivor_id
    if not survivor.name and merged.name:
        survivor.name = merged.name
    session.flush()
    # a bulk delete: the ORM would null the (already moved) address rows it still has in memory
    session.expunge(merged)
    session.execute(delete(Contact).where(Contact.id == merged_id))
    session.expire(survivor, ["emails", "identities"])
    outbox.record(session, "contacts_merged", survivor_id, {
        "survivor_id": survivor_id, "merged_id": merged_id, "name": survivor.name,
        "emails": [e.email for e in survivor.emails], "merged_emails": merged_emails, "merged_by": user_id})
    return survivor


def may_erase(principal) -> bool:
    """Erasure is irreversible and account-wide: super admins only (docs/access.md)."""
    return bool(principal.super_admin)


def erase(session: Session, outbox: Outbox, contact_id: str, principal) -> ContactErasure:
    """`POST /api/contacts/{id}/erase`: what contacts holds of the person is deleted now, and
    `contact_erased` asks the other services to erase theirs."""
    if not may_erase(principal):
        raise Forbidden("only super admins may erase a contact")
    contact = _locked(session, [contact_id])[contact_id]
    emails = [e.email for e in contact.emails]
    identities = [{"kind": i.kind, "value": i.value} for i in contact.identities]
    entries = session.execute(select(TimelineEntry).where(TimelineEntry.contact_id == contact_id)).scalars().all()
    intake_ids = sorted({e.intake_id for e in entries if e.direction == "in" and e.intake_id})
    links = {e.intake_id for e in entries if e.intake_id}
    session.expunge(contact)
    held_ids = list(session.execute(select(HeldMessage.intake_id).where(
        HeldMessage.email.in_(emails or [""]))).scalars())
    intake_ids = sorted(set(intake_ids) | set(held_ids))  # held-back spam: ingest stored it too
    held = session.execute(delete(HeldMessage).where(HeldMessage.intake_id.in_(held_ids or [""]))).rowcount
    # which conversation a message is in is no personal data, but nothing should lead back to it
    session.execute(delete(MessageConversation).where(MessageConversation.intake_id.in_(links or [""])))
    session.execute(delete(TimelineEntry).where(TimelineEntry.contact_id == contact_id))
    session.execute(delete(ContactIdentity).where(ContactIdentity.contact_id == contact_id))
    session.execute(delete(ContactEmail).where(ContactEmail.contact_id == contact_id))
    session.execute(delete(Contact).where(Contact.id == contact_id))
    events = drop_pending_events(session, outbox.table, erasure_keys(
        {"contact_id": contact_id, "emails": emails, "identities": identities}), keep=KEPT_EVENTS)
    erasure = ContactErasure(id=str(uuid.uuid4()), contact_id=contact_id, requested_by=principal.user_id,
                             requested_at=dt.datetime.now(dt.UTC), report={"contacts": {
                                 "contacts": 1, "addresses": len(emails), "identities": len(identities),
                                 "timeline_entries": len(entries), "held_messages": held,
                                 "pending_events": events}})
    session.add(erasure)
    outbox.record(session, "contact_erased", contact_id, {
        "erasure_id": erasure.id, "contact_id": contact_id, "emails": emails, "identities": identities,
        "intake_ids": intake_ids, "erased_by": principal.user_id})
    session.flush()
    return erasure


def confirm_erasure(session: Session, service: str, data: dict) -> None:
    """A service's `*_erased` confirmation: its counts in the report (a redelivery overwrites the
    same counts); complete once every erasing service has confirmed."""
    erasure = session.execute(select(ContactErasure).where(ContactErasure.id == data["erasure_id"])
                              .with_for_update()).scalar_one_or_none()
    if erasure is None:  # not ours (another deployment's contacts on the same broker): nothing to fill
        return
    report = dict(erasure.report or {})
    report[service] = {k: int(v) for k, v in (data.get("erased") or {}).items()}
    erasure.report = report  # a new dict: the JSON column sees the change
    if erasure.completed_at is None and all(s in report for s in ERASING_SERVICES):
        erasure.completed_at = dt.datetime.now(dt.UTC)


def erasure_view(erasure: ContactErasure) -> dict:
    report = erasure.report or {}
    return {
        "id": erasure.id, "contact_id": erasure.contact_id, "requested_by": erasure.requested_by,
        "requested_at": erasure.requested_at.isoformat() if erasure.requested_at else None,
        "status": "complete" if erasure.completed_at else "pending",
        "completed_at": erasure.completed_at.isoformat() if erasure.completed_at else None,
        "services": {service: report.get(service) for service in ("contacts", *ERASING_SERVICES)},
    }
