"""Read side of the conversations HTTP API."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from conversations import domain
from conversations.models import Channel, Conversation, Inbox, Message
from conversations.schemas import (
    ConversationSchema,
    ConversationSummarySchema,
    InboxSchema,
    MessageSchema,
)
from mailroom_shared.http import HttpError, encode_cursor


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def inbox_view(inbox: Inbox) -> dict:
    primary = next((c.address for c in inbox.channels if c.is_primary), None)
    return InboxSchema().dump({
        "id": inbox.id, "key": inbox.key, "name": inbox.name, "primary_address": primary,
        "channel_addresses": [c.address for c in inbox.channels], "channels": inbox.channels,
        "members": [{"user_id": m.user_id, "email": m.email} for m in inbox.members],
        "created_at": _aware(inbox.created_at), "updated_at": _aware(inbox.updated_at),
    })


def list_inboxes(session: Session) -> dict:
    inboxes = session.execute(select(Inbox).order_by(Inbox.name, Inbox.id)).scalars().all()
    return {"items": [inbox_view(i) for i in inboxes], "next_cursor": None}


def _conversation_fields(conversation: Conversation) -> dict:
    return {
        "id": conversation.id, "inbox_id": conversation.inbox_id, "subject": conversation.subject,
        "contact": {"email": conversation.contact_email, "name": conversation.contact_name,
                    "contact_id": conversation.contact_id},
        "status": conversation.status, "spam": conversation.spam,
        "last_message_at": _aware(conversation.last_message_at), "message_count": conversation.message_count,
        "snippet": conversation.snippet, "created_at": _aware(conversation.created_at),
        "closed_at": _aware(conversation.closed_at), "reopened_from": conversation.reopened_from,
        "related_conversation_id": conversation.related_conversation_id,
    }


def conversation_summary(conversation: Conversation) -> dict:
    return ConversationSummarySchema().dump(_conversation_fields(conversation))


def conversation_view(session: Session, conversation: Conversation) -> dict:
    messages = session.execute(select(Message).where(Message.conversation_id == conversation.id)
                               .order_by(Message.received_at, Message.created_at, Message.id)).scalars().all()
    primary = session.execute(select(Channel.address).where(
        Channel.inbox_id == conversation.inbox_id, Channel.is_primary.is_(True))).scalar_one_or_none()
    return ConversationSchema().dump({
        **_conversation_fields(conversation), "messages": messages, "reply_token": conversation.reply_token,
        "reply_address": domain.reply_address(primary, conversation.reply_token) if primary else None,
    })


def message_view(message: Message) -> dict:
    return MessageSchema().dump(message)


def _view_filter(inbox_id: str, view: str):
    if view == "open":
        return and_(Conversation.inbox_id == inbox_id, Conversation.spam.is_(False),
                    Conversation.status == domain.OPEN)
    if view == "closed":
        return and_(Conversation.inbox_id == inbox_id, Conversation.spam.is_(False),
                    Conversation.status == domain.CLOSED)
    if view == "spam":
        return and_(Conversation.inbox_id == inbox_id, Conversation.spam.is_(True))
    return and_(Conversation.inbox_id == inbox_id, Conversation.spam.is_(False))  # all (but spam)


def conversations_page(session: Session, inbox_id: str, view: str, cursor: dict | None, limit: int) -> dict:
    """Newest activity first; the cursor is the (last_message_at, id) of the last item returned.
    (A conversation that gets a new message while a client pages moves to the top: it is seen
    on the client's next refresh, not twice in one walk.)"""
    query = select(Conversation).where(_view_filter(inbox_id, view))
    if cursor is not None:
        at, last_id = _cursor_time(cursor.get("at")), cursor.get("id")
        if not isinstance(last_id, str):
            raise HttpError("invalid cursor")
        query = query.where(or_(Conversation.last_message_at < at,
                                and_(Conversation.last_message_at == at, Conversation.id < last_id)))
    rows = session.execute(query.order_by(Conversation.last_message_at.desc(), Conversation.id.desc())
                           .limit(limit + 1)).scalars().all()
    items = [conversation_summary(c) for c in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor({"at": _aware(last.last_message_at).isoformat(), "id": last.id})
    return {"items": items, "next_cursor": next_cursor}


def _cursor_time(value) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise HttpError("invalid cursor") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
