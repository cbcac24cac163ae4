"""Read models of the contacts HTTP API: functions (session, ...) -> dicts for the answers."""

from __future__ import annotations

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from contacts.domain.timeline import stored_message_of
from contacts.domain.visibility import may_see_inbox
from contacts.models import (
    Contact,
    ContactEmail,
    InboxAccess,
    MessageConversation,
    OwnAddress,
    TimelineEntry,
    TimelineEntryChannel,
)
from contacts.schemas import ContactSchema, TimelineEntrySchema
from mailroom_shared.addresses import InvalidAddress, normalise_email
from mailroom_shared.auth import Principal, sign_blob_access, with_access
from mailroom_shared.http import HttpError, schema_instance
from mailroom_shared.pagination import newest_first, next_cursor


def contact_view(contact: Contact) -> dict:
    return schema_instance(ContactSchema).dump({
        "id": contact.id, "name": contact.name, "emails": [e.email for e in contact.emails],
        "identities": [{"kind": i.kind, "value": i.value} for i in contact.identities],
        "created_at": contact.created_at,
    })


def contacts_with_email(session: Session, email: str) -> dict:
    """`?email=`: the contact holding this address (compared normalised: case, IDNA), as a page
    of zero or one; 400 for something that is not an address."""
    try:
        normalised = normalise_email(email)
    except InvalidAddress as exc:
        raise HttpError(str(exc)) from exc
    contact = session.execute(
        select(Contact).join(ContactEmail).where(ContactEmail.email == normalised)).scalar_one_or_none()
    return {"items": [contact_view(contact)] if contact else [], "next_cursor": None}


def search_page(session: Session, query: str, limit: int) -> dict:
    """`?q=`: by name or email, case-insensitively (for recipient pickers); one page."""
    pattern = f"%{query.lower()}%"
    ids = session.execute(
        select(Contact.id).outerjoin(ContactEmail)
        .where(or_(ContactEmail.email.like(pattern), Contact.name.ilike(pattern)))
        .group_by(Contact.id).order_by(Contact.id).limit(limit)
    ).scalars().all()
    contacts = session.execute(select(Contact).where(Contact.id.in_(ids))).scalars().all()
    return {"items": [contact_view(c) for c in sorted(contacts, key=lambda c: (c.name or "", c.id))],
            "next_cursor": None}


def visible_channel_addresses(session: Session, principal: Principal) -> set[str] | None:
    """The inbox addresses whose mail `principal` may see; None = every inbox (account-wide admins)."""
    if principal.sees_every_inbox:
        return None
    visible = {access.inbox_id for access in session.execute(select(InboxAccess)).scalars()
               if may_see_inbox(access.visibility, access.member_user_ids, access.team_ids,
                                user_id=principal.user_id, caller_team_ids=principal.team_ids)}
    return set(session.execute(select(OwnAddress.email).where(OwnAddress.inbox_id.in_(visible))).scalars())


def visible_inbox_ids(session: Session, principal: Principal) -> set[str] | None:
    """The inboxes whose chat and form messages `principal` may see; None = every inbox."""
    if principal.sees_every_inbox:
        return None
    return {access.inbox_id for access in session.execute(select(InboxAccess)).scalars()
            if may_see_inbox(access.visibility, access.member_user_ids, access.team_ids,
                             user_id=principal.user_id, caller_team_ids=principal.team_ids)}


def _with_download_token(entry: TimelineEntry, attachments: list[dict], principal: Principal) -> list[dict]:
    """An inbound message's attachment links carry a download token for this caller and this
    message, as conversations' messages do (ingest serves a member nothing without one). Only
    entries the caller may see get here: the page leaves out the inboxes it may not view."""
    intake_id = stored_message_of(entry.direction, entry.intake_id)
    if intake_id is None or not attachments:
        return attachments
    token = sign_blob_access(intake_id, principal.user_id)
    return [{**attachment, "url": with_access(attachment.get("url"), token)} for attachment in attachments]


def _inboxes_reached(session: Session, entries: list[TimelineEntry],
                     visible: set[str] | None) -> dict[str, dict]:
    """entry id → {channel_addresses, inbox_ids}: every inbox address the email reached (one
    email sent to several of our inboxes is one entry), of those the caller may see (`visible`:
    None = all), and their inboxes (our copy of inbox_updated), first address first."""
    if not entries:
        return {}
    extra: dict[str, list[str]] = {}
    for entry_id, address in session.execute(
            select(TimelineEntryChannel.entry_id, TimelineEntryChannel.channel_address)
            .where(TimelineEntryChannel.entry_id.in_([e.id for e in entries]))
            .order_by(TimelineEntryChannel.channel_address)):
        extra.setdefault(entry_id, []).append(address)
    addresses = {a for e in entries for a in (e.channel_address, *extra.get(e.id, ())) if a}
    inbox_of = dict(session.execute(select(OwnAddress.email, OwnAddress.inbox_id)
                                    .where(OwnAddress.email.in_(sorted(addresses)))).all()) if addresses else {}
    result = {}
    for entry in entries:
        reached = [a for a in dict.fromkeys([entry.channel_address, *extra.get(entry.id, ())])
                   if a and (visible is None or a in visible)]
        inboxes = [inbox_of[a] for a in reached if a in inbox_of]
        if entry.inbox_id and entry.inbox_id not in inboxes:  # chat and form entries
            inboxes.insert(0, entry.inbox_id)
        result[entry.id] = {"channel_address": reached[0] if reached else entry.channel_address,
                            "channel_addresses": reached, "inbox_ids": list(dict.fromkeys(inboxes))}
    return result


def timeline_page(session: Session, contact_id: str, cursor: dict | None, limit: int,
                  principal: Principal) -> dict:
    """Newest first; the cursor is the (occurred_at, id) of the last item returned. Entries of
    inboxes the caller may not see are left out (their subjects and snippets are that inbox's)."""
    query = (select(TimelineEntry, MessageConversation.conversation_id)
             .outerjoin(MessageConversation, MessageConversation.intake_id == TimelineEntry.intake_id)
             .where(TimelineEntry.contact_id == contact_id))
    addresses = visible_channel_addresses(session, principal)
    if addresses is not None:  # email by the inbox address it came on, chat and forms by their inbox
        query = query.where(or_(TimelineEntry.channel_address.in_(addresses),
                                TimelineEntry.inbox_id.in_(visible_inbox_ids(session, principal) or set()),
                                exists(select(TimelineEntryChannel.entry_id).where(  # the same email, other inboxes
                                    TimelineEntryChannel.entry_id == TimelineEntry.id,
                                    TimelineEntryChannel.channel_address.in_(addresses)))))
    rows = session.execute(newest_first(query, TimelineEntry.occurred_at, TimelineEntry.id, cursor, limit)).all()
    reached = _inboxes_reached(session, [entry for entry, _ in rows[:limit]], addresses)
    items = []
    for entry, conversation_id in rows[:limit]:
        item = schema_instance(TimelineEntrySchema).dump(entry)
        item.update(reached.get(entry.id, {}))
        item["conversation_id"] = conversation_id
        item["attachments"] = _with_download_token(entry, item["attachments"], principal)
        items.append(item)
    return {"items": items, "next_cursor": next_cursor(rows, limit, lambda row: row[0].occurred_at,
                                                        lambda row: row[0].id)}
