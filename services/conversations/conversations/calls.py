"""Calls from the reply editor (issue #17, docs/calls.md): a member of the conversation's inbox
logs a call (direction, the contact's number, outcome, duration, notes, a recording link); it is
stored with the conversation and announced as `call_logged`, from which contacts puts it on the
contact's timeline and learns the number. The rules are in domain/calls.py; the read side
(the conversation's calls, the contact's number and its tel: link) in queries.py.

A request is validated before anything is read (422 naming the field); `Idempotency-Key` (the
logging user's) logs a call once: the same key and request again answers 200 with that call, the
same key with another request 409. Concurrent requests with one key: the unique row decides."""

from __future__ import annotations

import uuid

from marshmallow import ValidationError
from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conversations import handlers
from conversations.domain import calls as rules
from conversations.models import Call, Conversation
from conversations.schemas import CallCreateSchema
from conversations.settings import Settings
from mailroom_shared.auth import Principal
from mailroom_shared.db import utcnow
from mailroom_shared.http import Conflict, HttpError, schema_instance
from mailroom_shared.messaging.outbox import Outbox
from mailroom_shared.text import iso_time

ACTION = "log calls"


class InvalidCallRequest(HttpError):
    status = 422
    code = "invalid_call"


def _first_problem(messages) -> str:
    if isinstance(messages, dict):
        for field, problem in messages.items():
            text = _first_problem(problem)
            return f"{field}: {text}"
    if isinstance(messages, list) and messages:
        return _first_problem(messages[0])
    return str(messages)


def read_call(body: dict, key: str | None, settings: Settings) -> tuple[dict, str | None, str | None]:
    """(the call, normalised; the Idempotency-Key; the request's digest under it), or
    InvalidCallRequest (422)."""
    try:
        request = schema_instance(CallCreateSchema).load(body)
    except ValidationError as exc:
        raise InvalidCallRequest(f"the call is not valid: {_first_problem(exc.messages)}", exc.messages) from None
    try:
        key = rules.check_idempotency_key(key)
        call = {**request, "phone_number": rules.normalise_phone_number(request["phone_number"],
                                                                         settings.default_phone_region),
                "recording_url": rules.check_recording_url(request["recording_url"]),
                "notes": rules.check_notes(request["notes"]),
                "called_at": rules.check_called_at(request["called_at"], utcnow())}
    except rules.InvalidCall as exc:
        message = str(exc) if exc.field in str(exc) else f"{exc.field}: {exc}"
        raise InvalidCallRequest(f"the call is not valid: {message}", {exc.field: [str(exc)]}) from None
    digest = rules.request_digest("", {**call, "called_at": request["called_at"]}) if key else None
    return call, key, digest


def _existing(session: Session, principal: Principal, conversation_id: str, key: str | None,
              digest: str | None) -> Call | None:
    if not key:
        return None
    call = session.execute(select(Call).where(Call.logged_by == principal.user_id,
                                              Call.idempotency_key == key)).scalar_one_or_none()
    if call is not None and (call.conversation_id != conversation_id or call.request_digest != digest):
        raise Conflict("this Idempotency-Key was used for a different call", {"call_id": call.id})
    return call


def log_call(session: Session, outbox: Outbox, principal: Principal, conversation_id: str, call: dict,
             key: str | None = None, digest: str | None = None) -> tuple[Call, bool]:
    """(the call, True) once stored with its call_logged event; (the earlier call, False) for a
    key used before. 404 when the caller may not view the conversation, 403 when it may only view."""
    conversation, inbox = handlers._conversation_to_act_on(session, principal, conversation_id, ACTION)
    existing = _existing(session, principal, conversation_id, key, digest)
    if existing is not None:
        return existing, False
    row = Call(id=str(uuid.uuid4()), conversation_id=conversation.id, inbox_id=inbox.id,
               direction=call["direction"], phone_number=call["phone_number"], outcome=call["outcome"],
               duration_seconds=call["duration_seconds"], notes=call["notes"], recording_url=call["recording_url"],
               logged_by=principal.user_id, logged_by_email=principal.email, called_at=call["called_at"],
               created_at=utcnow(), idempotency_key=key, request_digest=digest)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:  # a concurrent request with the same key stored it first
        winner = _existing(session, principal, conversation_id, key, digest)
        if winner is None:
            raise
        return winner, False
    outbox.record(session, "call_logged", row.id, call_logged(row, conversation))
    return row, True


def call_logged(call: Call, conversation: Conversation) -> dict:
    """The event: the call, its conversation and inbox, and whom it was with (as far as we know)."""
    return {
        "call_id": call.id, "conversation_id": conversation.id, "inbox_id": call.inbox_id,
        "contact_id": conversation.contact_id, "contact_email": conversation.contact_email,
        "contact_name": conversation.contact_name, "direction": call.direction, "phone_number": call.phone_number,
        "outcome": call.outcome, "duration_seconds": call.duration_seconds, "notes": call.notes,
        "recording_url": call.recording_url, "logged_by": call.logged_by, "logged_by_email": call.logged_by_email,
        "called_at": iso_time(call.called_at), "created_at": iso_time(call.created_at),
    }


def erase_calls(session: Session, data: dict) -> int:
    """contact_erased: the calls on the person's conversations and those with their numbers go
    (before contact_corrections.erase_contact lets go of the conversations' contact)."""
    phones = sorted({str(i.get("value")) for i in data.get("identities") or []
                     if i.get("kind") == "phone" and i.get("value")})
    theirs = select(Conversation.id).where(Conversation.contact_id == data["contact_id"])
    condition = Call.conversation_id.in_(theirs)
    if phones:
        condition = or_(condition, Call.phone_number.in_(phones))
    return session.execute(delete(Call).where(condition)).rowcount
