"""Read side of the outbound HTTP API."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mailroom_shared.db import aware
from mailroom_shared.pagination import newest_first, next_cursor
from outbound.handlers import attachment_url
from outbound.models import DeliveryAttempt, Email, Snippet, Template
from outbound.schemas import EmailSchema, SnippetSchema, TemplateSchema


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
        "next_attempt_at": aware(email.next_attempt_at) if email.state in ("queued", "deferred") else None,
        "last_error": email.last_error, "smtp_queue_id": email.smtp_queue_id,
        "refused_recipients": email.refused_recipients or [], "bounce_reason": email.bounce_reason,
        "created_at": aware(email.created_at), "sent_at": aware(email.sent_at),
        "failed_at": aware(email.failed_at), "bounced_at": aware(email.bounced_at),
        "delivery_attempts": [{"attempt": a.attempt, "started_at": aware(a.started_at),
                               "finished_at": aware(a.finished_at), "outcome": a.outcome,
                               "smtp_code": a.smtp_code, "response": a.response} for a in attempts],
    })


def emails_page(session: Session, where, cursor: dict | None, limit: int) -> dict:
    """Newest first; the cursor is the (created_at, id) of the last item returned."""
    rows = session.execute(newest_first(select(Email).where(where), Email.created_at, Email.id, cursor,
                                        limit)).scalars().all()
    return {"items": [email_view(session, e) for e in rows[:limit]],
            "next_cursor": next_cursor(rows, limit, lambda e: e.created_at)}


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
