"""Automatic acknowledgement per inbox (optional, off by default): when conversations reports a new
conversation (`conversation_created`, not spam), an inbox whose acknowledgement is enabled answers
its first message from a template — threaded as a reply, `Auto-Submitted: auto-replied`, sent to
the message's Return-Path only — unless the rules say no (domain/auto_ack.py), the address is
suppressed, or the sender was acknowledged within the inbox's period. One acknowledgement per
conversation (its Idempotency-Key), whatever the redeliveries."""

from __future__ import annotations

import dataclasses
import logging

from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailroom_shared.auth import Principal
from mailroom_shared.db import aware, conflict_insert, utcnow
from mailroom_shared.http import HttpError, schema_instance
from mailroom_shared.messaging.outbox import Outbox
from outbound import handlers, suppressions
from outbound.domain import auto_ack, idempotency, suppression, templates
from outbound.domain.errors import InvalidEmail
from outbound.domain.headers import HeaderInjection
from outbound.models import AutoAcknowledged, AutoAcknowledgement, Email
from outbound.schemas import AutoAcknowledgementSchema
from outbound.settings import Settings

log = logging.getLogger(__name__)


def view(inbox_id: str, row: AutoAcknowledgement | None) -> dict:
    if row is None:
        return {"inbox_id": inbox_id, "enabled": False, "subject": None, "html": None, "text": None,
                "period_hours": 24, "updated_by": None, "updated_at": None}
    return {"inbox_id": inbox_id, "enabled": row.enabled, "subject": row.subject, "html": row.html,
            "text": row.text, "period_hours": row.period_hours, "updated_by": row.updated_by,
            "updated_at": aware(row.updated_at).isoformat() if row.updated_at else None}


def read(session: Session, inbox_id: str) -> dict:
    return view(inbox_id, session.get(AutoAcknowledgement, inbox_id))


def write(session: Session, inbox_id: str, body: dict, principal: Principal) -> dict:
    """Set an inbox's acknowledgement (its members). The template is checked now, not at send time."""
    try:
        values = schema_instance(AutoAcknowledgementSchema).load(body if isinstance(body, dict) else {})
    except ValidationError as exc:
        raise HttpError("the auto-acknowledgement is not valid", exc.messages) from exc
    if values["enabled"] and not (values.get("html") or values.get("text")):
        raise HttpError("an enabled auto-acknowledgement needs html or text", {"field": "text"})
    try:
        for name in ("subject", "html", "text"):
            templates.check_syntax(values.get(name), name)
            templates.render(values.get(name), _sample_tokens(), on_missing="error", html=name == "html", field=name)
    except templates.TemplateRenderError as exc:
        raise HttpError(str(exc), {"field": str(exc).split(":")[0]}) from exc
    if any(ch in (values.get("subject") or "") for ch in "\r\n\x00"):
        raise HttpError("subject: no line breaks", {"field": "subject"})
    row = session.get(AutoAcknowledgement, inbox_id, with_for_update=True) or AutoAcknowledgement(inbox_id=inbox_id)
    for name in ("enabled", "subject", "html", "text", "period_hours"):
        setattr(row, name, values.get(name))
    row.updated_by, row.updated_at = principal.user_id, utcnow()
    session.add(row)
    session.flush()
    return view(inbox_id, row)


def _sample_tokens() -> dict:
    return templates.token_context(contact={"name": "Ada Lovelace", "email": "ada@example.com"},
                                   conversation={"id": "c", "subject": "Hello", "reply_address": "s@x.example"},
                                   inbox={"name": "Support", "address": "s@x.example"})


def enabled_for(session: Session, inbox_id: str) -> AutoAcknowledgement | None:
    row = session.get(AutoAcknowledgement, inbox_id)
    return row if row is not None and row.enabled else None


def acknowledge(session: Session, outbox: Outbox, settings: Settings, setting: AutoAcknowledgement,
                context: dict, data: dict) -> Email | None:
    """Queue the acknowledgement of a new conversation, or None (and why, in the log)."""
    conversation_id = data["conversation_id"]
    message = context.get("message")
    own = {suppression.normalised_or_none(i.get("email")) for i in (context.get("inbox") or {}).get("identities") or []}
    why_not = auto_ack.refusal(message, own - {None})
    if why_not is not None:
        log.info("conversation %s: no auto-acknowledgement: %s", conversation_id, why_not)
        return None
    key = f"auto-ack:{conversation_id}"
    digest = idempotency.request_digest("auto-ack", conversation_id, {})
    if handlers.find_idempotent(session, key, digest) is not None:
        return None  # acknowledged already (a redelivery)
    address = auto_ack.target(message)
    session.execute(conflict_insert(session, AutoAcknowledged).values(
        inbox_id=setting.inbox_id, address=address, last_sent_at=None).on_conflict_do_nothing())
    seen = session.execute(select(AutoAcknowledged).where(
        AutoAcknowledged.inbox_id == setting.inbox_id, AutoAcknowledged.address == address)
        .with_for_update()).scalar_one()
    now = utcnow()
    if auto_ack.recently_acknowledged(aware(seen.last_sent_at), now, setting.period_hours):
        log.info("conversation %s: %s was acknowledged at %s already", conversation_id, address, seen.last_sent_at)
        return None
    try:
        name = ((context.get("conversation") or {}).get("contact") or {}).get("name") or \
            (message.get("sender") or {}).get("name")  # the tokens' contact.name / first_name
        to = [{"email": address, "name": name}] if name else [address]
        prepared = handlers.prepare_reply(context, {"to": to, "cc": [], "message_id": message["id"]}, settings,
                                          setting)
        prepared = dataclasses.replace(prepared, automatic="auto-replied")
        suppressions.refuse_suppressed(session, prepared)
        email = handlers.queue_email(session, outbox, prepared, settings, key, digest)
    except suppressions.RecipientSuppressed:
        log.info("conversation %s: %s is suppressed: no auto-acknowledgement", conversation_id, address)
        return None
    except (InvalidEmail, HeaderInjection) as exc:  # e.g. a template that renders an unsafe subject
        log.warning("conversation %s: the auto-acknowledgement could not be made: %s", conversation_id, exc)
        return None
    seen.last_sent_at, seen.last_email_id = now, email.id
    return email
