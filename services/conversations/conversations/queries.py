"""Read side of the conversations HTTP API."""

from __future__ import annotations

from sqlalchemy import and_, exists, func, select, true
from sqlalchemy.orm import Session

from conversations import access, domain
from conversations.models import Channel, Comment, Conversation, Inbox, Message, Ticket
from conversations.schemas import (
    ConversationSchema,
    ConversationSummarySchema,
    InboxSchema,
    MessageSchema,
)
from mailroom_shared.auth import Principal, sign_blob_access, with_access
from mailroom_shared.db import aware
from mailroom_shared.pagination import newest_first, next_cursor


def inbox_view(inbox: Inbox, principal: Principal | None = None) -> dict:
    primary = next((c.address for c in inbox.channels if c.is_primary), None)
    return InboxSchema().dump({
        "id": inbox.id, "key": inbox.key, "name": inbox.name, "primary_address": primary,
        "channel_addresses": [c.address for c in inbox.channels], "channels": inbox.channels,
        "members": [{"user_id": m.user_id, "email": m.email} for m in inbox.members],
        "access": {"visibility": inbox.visibility, "teams": [t.team_id for t in inbox.teams]},
        "permissions": access.permissions(principal, inbox) if principal else None,
        "created_at": aware(inbox.created_at), "updated_at": aware(inbox.updated_at),
    })


def list_inboxes(session: Session, principal: Principal) -> dict:
    """The inboxes the principal may view (with what it may do in each)."""
    query = select(Inbox).order_by(Inbox.name, Inbox.id)
    condition = access.viewable_filter(principal)
    if condition is not None:
        query = query.where(condition)
    inboxes = session.execute(query).scalars().all()
    return {"items": [inbox_view(i, principal) for i in inboxes], "next_cursor": None}


def _conversation_fields(conversation: Conversation) -> dict:
    return {
        "id": conversation.id, "inbox_id": conversation.inbox_id, "subject": conversation.subject,
        "contact": {"email": conversation.contact_email, "name": conversation.contact_name,
                    "contact_id": conversation.contact_id},
        "status": conversation.status, "spam": conversation.spam,
        "last_message_at": aware(conversation.last_message_at), "message_count": conversation.message_count,
        "snippet": conversation.snippet, "created_at": aware(conversation.created_at),
        "closed_at": aware(conversation.closed_at), "reopened_from": conversation.reopened_from,
        "related_conversation_id": conversation.related_conversation_id,
        "assignee_user_id": conversation.assignee_user_id, "assigned_at": aware(conversation.assigned_at),
        "ticket_id": conversation.ticket_id,
    }


def conversation_summary(conversation: Conversation) -> dict:
    return ConversationSummarySchema().dump(_conversation_fields(conversation))


def conversation_view(session: Session, conversation: Conversation, inbox: Inbox, principal: Principal) -> dict:
    messages = session.execute(select(Message).where(Message.conversation_id == conversation.id)
                               .order_by(Message.received_at, Message.created_at, Message.id)).scalars().all()
    comments = session.execute(select(Comment).where(Comment.conversation_id == conversation.id)
                               .order_by(Comment.created_at, Comment.id)).scalars().all()
    ticket = session.get(Ticket, conversation.ticket_id) if conversation.ticket_id else None
    primary = session.execute(select(Channel.address).where(
        Channel.inbox_id == conversation.inbox_id, Channel.is_primary.is_(True))).scalar_one_or_none()
    return ConversationSchema().dump({
        **_conversation_fields(conversation),
        "messages": [_message_fields(m, principal, with_html=False) for m in messages],
        "comments": comments, "ticket": ticket, "permissions": access.permissions(principal, inbox),
        "reply_token": conversation.reply_token,
        "reply_address": domain.reply_address(primary, conversation.reply_token) if primary else None,
    })


def _message_fields(message: Message, principal: Principal, *, with_html: bool = True,
                    html: str | None = None) -> dict:
    """A message with its raw-message and attachment URLs (also those inside the HTML, i.e. the
    `cid:` images) carrying a short-lived download token for this message only: the browser can
    load them (an <img> sends no bearer header) and ingest serves them only with it."""
    fields = {column.key: getattr(message, column.key) for column in Message.__table__.columns}
    token = sign_blob_access(message.intake_id, principal.user_id) if message.intake_id else None
    attachments = []
    body = message.html if html is None else html
    for attachment in message.attachments or []:
        url = attachment.get("url")
        signed = with_access(url, token)
        if with_html and body and url and signed != url:
            body = body.replace(f'"{url}"', f'"{signed}"')
        attachments.append({**attachment, "url": signed})
    fields.update(attachments=attachments, full_message_url=with_access(message.full_message_url, token))
    if with_html:
        fields["html"] = body
    return fields


def message_view(message: Message, principal: Principal, html: str | None = None,
                 remote_images_loaded: bool = False) -> dict:
    fields = _message_fields(message, principal, html=html)
    if remote_images_loaded:
        fields.update(remote_images_blocked=0)
    return MessageSchema().dump({**fields, "remote_images_loaded": remote_images_loaded})


def _view_filter(view: str, principal: Principal, inbox_id: str | None):
    """The conversations of `view`, in one inbox or across the inboxes the principal may view."""
    if inbox_id is not None:
        scope = Conversation.inbox_id == inbox_id
    else:
        viewable = access.viewable_filter(principal)
        scope = Conversation.inbox_id.in_(select(Inbox.id).where(viewable)) if viewable is not None else true()
    not_spam = Conversation.spam.is_(False)
    if view == "open":
        return and_(scope, not_spam, Conversation.status == domain.OPEN)
    if view == "closed":
        return and_(scope, not_spam, Conversation.status == domain.CLOSED)
    if view == "mine":
        return and_(scope, not_spam, Conversation.status == domain.OPEN,
                    Conversation.assignee_user_id == principal.user_id)
    if view == "unassigned":
        return and_(scope, not_spam, Conversation.status == domain.OPEN, Conversation.assignee_user_id.is_(None))
    if view == "sent":
        return and_(scope, not_spam, exists(select(Message.id).where(
            Message.conversation_id == Conversation.id, Message.direction == "out")))
    if view == "spam":
        return and_(scope, Conversation.spam.is_(True))
    return and_(scope, not_spam)  # all (but spam)


def conversations_page(session: Session, principal: Principal, inbox_id: str | None, view: str,
                       cursor: dict | None, limit: int) -> dict:
    """Newest activity first; the cursor is the (last_message_at, id) of the last item returned.
    (A conversation that gets a new message while a client pages moves to the top: it is seen
    on the client's next refresh, not twice in one walk.)"""
    query = newest_first(select(Conversation).where(_view_filter(view, principal, inbox_id)),
                         Conversation.last_message_at, Conversation.id, cursor, limit)
    rows = session.execute(query).scalars().all()
    return {"items": [conversation_summary(c) for c in rows[:limit]],
            "next_cursor": next_cursor(rows, limit, lambda c: c.last_message_at)}


def view_counts(session: Session, principal: Principal, inbox_id: str | None) -> dict:
    """How many conversations each view holds (the numbers next to the view names)."""
    return {view: session.execute(select(func.count()).select_from(Conversation)
                                  .where(_view_filter(view, principal, inbox_id))).scalar_one()
            for view in domain.VIEWS}
