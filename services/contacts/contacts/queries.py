"""Read side of the contacts HTTP API."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from contacts.models import Contact, ContactEmail, InboxAccess, MessageConversation, OwnAddress, TimelineEntry
from contacts.schemas import ContactSchema, TimelineEntrySchema
from mailroom_shared.auth import Principal
from mailroom_shared.pagination import newest_first, next_cursor


def contact_view(contact: Contact) -> dict:
    return ContactSchema().dump({
        "id": contact.id, "name": contact.name, "emails": [e.email for e in contact.emails],
        "created_at": contact.created_at,
    })


def search_contacts(session: Session, query: str, limit: int) -> list[dict]:
    """By name or email, case-insensitively (for recipient pickers)."""
    pattern = f"%{query.lower()}%"
    ids = session.execute(
        select(Contact.id).outerjoin(ContactEmail)
        .where(or_(ContactEmail.email.like(pattern), Contact.name.ilike(pattern)))
        .group_by(Contact.id).order_by(Contact.id).limit(limit)
    ).scalars().all()
    contacts = session.execute(select(Contact).where(Contact.id.in_(ids))).scalars().all()
    return [contact_view(c) for c in sorted(contacts, key=lambda c: (c.name or "", c.id))]


def visible_channel_addresses(session: Session, principal: Principal) -> set[str] | None:
    """The inbox addresses whose mail `principal` may see; None = every inbox (account-wide admins).
    The same rule as conversations/access.py: everyone-visible inboxes, or member by user or team."""
    if principal.sees_every_inbox:
        return None
    visible = set()
    for access in session.execute(select(InboxAccess)).scalars():
        if (access.visibility == "everyone" or principal.user_id in (access.member_user_ids or [])
                or principal.team_ids & set(access.team_ids or [])):
            visible.add(access.inbox_id)
    return set(session.execute(select(OwnAddress.email).where(OwnAddress.inbox_id.in_(visible))).scalars())


def timeline_page(session: Session, contact_id: str, cursor: dict | None, limit: int,
                  principal: Principal) -> dict:
    """Newest first; the cursor is the (occurred_at, id) of the last item returned. Entries of
    inboxes the caller may not see are left out (their subjects and snippets are that inbox's)."""
    query = (select(TimelineEntry, MessageConversation.conversation_id)
             .outerjoin(MessageConversation, MessageConversation.intake_id == TimelineEntry.intake_id)
             .where(TimelineEntry.contact_id == contact_id))
    addresses = visible_channel_addresses(session, principal)
    if addresses is not None:
        query = query.where(TimelineEntry.channel_address.in_(addresses))
    rows = session.execute(newest_first(query, TimelineEntry.occurred_at, TimelineEntry.id, cursor, limit)).all()
    items = []
    for entry, conversation_id in rows[:limit]:
        item = TimelineEntrySchema().dump(entry)
        item["conversation_id"] = conversation_id
        items.append(item)
    return {"items": items, "next_cursor": next_cursor(rows, limit, lambda row: row[0].occurred_at,
                                                        lambda row: row[0].id)}
