"""Read side of the outbound HTTP API."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from mailroom_shared.http import HttpError, encode_cursor
from outbound.handlers import attachment_url
from outbound.models import DeliveryAttempt, Email, Snippet, Template
from outbound.schemas import EmailSchema, SnippetSchema, TemplateSchema


def _aware(value):
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def email_view(session: Session, email: Email) -> dict:
    attempts = session.execute(select(DeliveryAttempt).where(DeliveryAttempt.email_id == email.id)
                               .order_by(DeliveryAttempt.attempt, DeliveryAttempt.id)).scalars().all()
    return EmailSchema().dump({
        "id": email.id, "kind": email.kind, "state": email.state, "inbox_id": email.inbox_id,
        "conversation_id": email.conversation_id, "replied_message_id": email.replied_message_id,
        "message_id": email.rfc_message_id, "from_": email.from_address, "to": email.to, "cc": email.cc,
        "bcc": email.bcc, "reply_to": email.reply_to, "subject": email.subject, "text": email.text,
        "html": email.html, "in_reply_to": email.in_reply_to, "references": email.references,
        "attachments": [{"id": a.id, "filename": a.filename, "content_type": a.content_type, "size": a.size,
                         "sha256": a.sha256, "disposition": a.disposition, "content_id": a.content_id,
                         "url": attachment_url(email.id, a.id)} for a in email.attachments],
        "attempts": email.attempts,
        "next_attempt_at": _aware(email.next_attempt_at) if email.state in ("queued", "deferred") else None,
        "last_error": email.last_error, "smtp_queue_id": email.smtp_queue_id,
        "refused_recipients": email.refused_recipients or [], "bounce_reason": email.bounce_reason,
        "created_at": _aware(email.created_at), "sent_at": _aware(email.sent_at),
        "failed_at": _aware(email.failed_at), "bounced_at": _aware(email.bounced_at),
        "delivery_attempts": [{"attempt": a.attempt, "started_at": _aware(a.started_at),
                               "finished_at": _aware(a.finished_at), "outcome": a.outcome,
                               "smtp_code": a.smtp_code, "response": a.response} for a in attempts],
    })


def emails_page(session: Session, where, cursor: dict | None, limit: int) -> dict:
    """Newest first; the cursor is the (created_at, id) of the last item returned."""
    query = select(Email).where(where)
    if cursor is not None:
        try:
            at = dt.datetime.fromisoformat(str(cursor.get("at")))
        except ValueError as exc:
            raise HttpError("invalid cursor") from exc
        last_id = str(cursor.get("id"))
        query = query.where(or_(Email.created_at < at, and_(Email.created_at == at, Email.id < last_id)))
    rows = session.execute(query.order_by(Email.created_at.desc(), Email.id.desc()).limit(limit + 1)).scalars().all()
    items = [email_view(session, e) for e in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor({"at": _aware(last.created_at).isoformat(), "id": last.id})
    return {"items": items, "next_cursor": next_cursor}


def template_view(template: Template) -> dict:
    return TemplateSchema().dump(template)


def snippet_view(snippet: Snippet) -> dict:
    return SnippetSchema().dump(snippet)


def list_templates(session: Session, inbox_id: str | None) -> dict:
    query = select(Template).order_by(Template.name, Template.id)
    if inbox_id:
        query = query.where(or_(Template.inbox_id.is_(None), Template.inbox_id == inbox_id))
    return {"items": [template_view(t) for t in session.execute(query).scalars()], "next_cursor": None}


def list_snippets(session: Session, inbox_id: str | None) -> dict:
    query = select(Snippet).order_by(Snippet.name, Snippet.id)
    if inbox_id:
        query = query.where(or_(Snippet.inbox_id.is_(None), Snippet.inbox_id == inbox_id))
    return {"items": [snippet_view(s) for s in session.execute(query).scalars()], "next_cursor": None}
