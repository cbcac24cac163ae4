"""Read side of the outbound service: functions (session, …) → the dicts its HTTP and RPC answers
are made of."""

from __future__ import annotations

import functools

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from mailroom_shared.db import aware
from mailroom_shared.http import Conflict, HttpError, NotFound, schema_instance
from mailroom_shared.pagination import newest_first, next_cursor
from outbound.domain import idempotency, recipients
from outbound.domain.attachments import attachment_url
from outbound.domain.errors import InvalidEmail
from outbound.domain.senders import choose_sender
from outbound.models import Attachment, DeliveryAttempt, Email, Snippet, Template
from outbound.schemas import EmailSchema, SnippetSchema, TemplateSchema


@functools.cache
def _queued_under_key(model):
    """The statement, built once per model (asked before every send with a key, issue #16)."""
    return select(model).where(model.idempotency_key == bindparam("key"))


def find_idempotent(session: Session, key: str | None, digest: str, model=Email):
    """The row of `model` (an email, or a chat reply: ChatMessage) already queued under `key`, or
    None. The same key with another request is a conflict (a client bug), never a second one."""
    if not key:
        return None
    row = session.execute(_queued_under_key(model), {"key": key}).scalar_one_or_none()
    if row is not None:
        try:
            idempotency.check_same_request(row.request_digest, digest)
        except idempotency.IdempotencyConflict as exc:
            raise Conflict(str(exc)) from exc
    return row


def email_view(session: Session, email: Email, attempts: list[DeliveryAttempt] | None = None) -> dict:
    """`attempts`: the email's delivery attempts when the caller knows them (none, for one just queued)."""
    if attempts is None:
        attempts = session.execute(select(DeliveryAttempt).where(DeliveryAttempt.email_id == email.id)
                                   .order_by(DeliveryAttempt.attempt, DeliveryAttempt.id)).scalars().all()
    return schema_instance(EmailSchema).dump({
        "id": email.id, "kind": email.kind, "state": email.state, "inbox_id": email.inbox_id,
        "conversation_id": email.conversation_id, "replied_message_id": email.replied_message_id,
        "message_id": email.rfc_message_id, "from_": email.from_address, "to": email.to, "cc": email.cc,
        "bcc": email.bcc, "reply_to": email.reply_to, "subject": email.subject, "text": email.text,
        "html": email.html, "in_reply_to": email.in_reply_to, "references": email.references,
        "attachments": [{"id": a.id, "filename": a.filename, "content_type": a.content_type, "size": a.size,
                         "sha256": a.sha256, "disposition": a.disposition, "content_id": a.content_id,
                         "url": attachment_url(email.id, a.id)} for a in email.attachments],
        "attempts": email.attempts,
        "next_attempt_at": aware(email.next_attempt_at) if email.state in ("queued", "deferred") else None,
        "last_error": email.last_error, "smtp_queue_id": email.smtp_queue_id,
        "refused_recipients": email.refused_recipients or [], "bounce_reason": email.bounce_reason,
        "bounced_recipients": email.bounced_recipients or [],
        "created_at": aware(email.created_at), "sent_at": aware(email.sent_at),
        "failed_at": aware(email.failed_at), "bounced_at": aware(email.bounced_at),
        "delivery_attempts": [{"attempt": a.attempt, "started_at": aware(a.started_at),
                               "finished_at": aware(a.finished_at), "outcome": a.outcome,
                               "smtp_code": a.smtp_code, "response": a.response} for a in attempts],
    })


def email_or_none(session: Session, email_id: str) -> dict | None:
    """An email's view, or None (RPC)."""
    email = session.get(Email, email_id)
    return email_view(session, email) if email is not None else None


def emails_page(session: Session, where, cursor: dict | None, limit: int) -> dict:
    """Newest first; the cursor is the (created_at, id) of the last item returned."""
    rows = session.execute(newest_first(select(Email).where(where), Email.created_at, Email.id, cursor,
                                        limit)).scalars().all()
    return {"items": [email_view(session, e) for e in rows[:limit]],
            "next_cursor": next_cursor(rows, limit, lambda e: e.created_at)}


def conversation_emails(session: Session, conversation_id: str, cursor: dict | None, limit: int) -> dict:
    return emails_page(session, Email.conversation_id == conversation_id, cursor, limit)


def inbox_emails(session: Session, inbox_id: str, state: str | None, cursor: dict | None, limit: int) -> dict:
    """Everything sent from an inbox with its delivery state, optionally in one state."""
    where = Email.inbox_id == inbox_id
    if state:
        where = where & (Email.state == state)
    return emails_page(session, where, cursor, limit)


def attachment_file(session: Session, email_id: str, attachment_id: str) -> dict:
    """An attachment's bytes and media type, and the inbox whose visibility decides who may read it."""
    attachment = session.get(Attachment, attachment_id)
    email = session.get(Email, email_id)
    if attachment is None or email is None or attachment.email_id != email_id:
        raise NotFound(f"no attachment {attachment_id} of email {email_id}")
    return {"inbox_id": email.inbox_id, "data": attachment.data, "content_type": attachment.content_type}


def reply_defaults(context: dict, reply_all: bool) -> dict:
    """What the reply form starts with: To, CC, From and Subject, from conversations' reply context."""
    try:
        message = context.get("message")
        if message is None:
            raise InvalidEmail("the conversation has no message to reply to", "message_id")
        own = [i["email"] for i in context["inbox"].get("identities") or []]
        defaults = recipients.default_reply_recipients(message, own, reply_all=reply_all)
        sender = choose_sender(context["inbox"], None, context.get("channel_address"))
    except InvalidEmail as exc:
        raise HttpError(str(exc)) from exc
    return {"to": [m.as_dict() for m in defaults.to], "cc": [m.as_dict() for m in defaults.cc],
            "from": sender.as_dict(), "subject": recipients.reply_subject(
                message.get("subject") or context["conversation"].get("subject")),
            "message_id": message["id"],
            "identities": [{"email": i["email"], "name": i.get("name")} for i in context["inbox"]["identities"]]}


def template_view(template: Template) -> dict:
    return schema_instance(TemplateSchema).dump(template)


def snippet_view(snippet: Snippet) -> dict:
    return schema_instance(SnippetSchema).dump(snippet)


def saved_items(session: Session, model, inbox_id: str | None) -> list:
    """Every template (or snippet) by name; with an inbox, those offered in it and those offered
    everywhere. Whom each may be shown to is its owner scope's rule (handlers.list_saved)."""
    query = select(model).order_by(model.name, model.id)
    if inbox_id:
        query = query.where(or_(model.inbox_id.is_(None), model.inbox_id == inbox_id))
    return list(session.execute(query).scalars())
