"""Use cases of replies to chat conversations (docs/channels.md). A reply (HTTP or RPC, the same
path as email) to a conversation whose channel_type is chat is stored with its exact JSON body and
`chat_message_queued` in one transaction; the chat delivery worker (chat_delivery.py) claims it
under a lease, POSTs it signed (Standard Webhooks, the channel's secret, `webhook-id` = the
message id on every attempt) to the connector's webhook URL at a checked public address, and
records sent / retried with backoff / failed with `chat_message_sent` / `chat_message_failed`."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailroom_shared import safe_http, signed_webhooks
from mailroom_shared.auth import Principal
from mailroom_shared.db import Database, is_postgres, utcnow
from mailroom_shared.http import HttpError, ServiceUnavailable
from mailroom_shared.messaging.outbox import Outbox
from mailroom_shared.text import iso_time
from outbound import queries
from outbound.domain import chat
from outbound.domain.delivery import backoff_seconds
from outbound.domain.errors import InvalidEmail
from outbound.models import ChatMessage
from outbound.settings import Settings

SECRET_KEY_VARIABLE = "MAILROOM_CONNECTOR_SECRET_KEY"  # noqa: S105 - a variable name, not a secret


def is_chat(context: dict) -> bool:
    return context.get("channel_type") == "chat"


def view(message: ChatMessage) -> dict:
    return {"id": message.id, "kind": "chat_reply", "conversation_id": message.conversation_id,
            "inbox_id": message.inbox_id, "channel_id": message.channel_id, "channel_kind": message.channel_kind,
            "thread_id": message.thread_id, "text": message.text, "state": message.state,
            "attempts": message.attempts, "last_status": message.last_status, "last_error": message.last_error,
            "next_attempt_at": iso_time(message.next_attempt_at) if message.state in ("queued", "deferred") else None,
            "created_at": iso_time(message.created_at), "sent_at": iso_time(message.sent_at),
            "failed_at": iso_time(message.failed_at)}


def _content(message: ChatMessage) -> dict:
    return {"chat_message_id": message.id, "inbox_id": message.inbox_id, "conversation_id": message.conversation_id,
            "channel_id": message.channel_id, "channel_kind": message.channel_kind, "thread_id": message.thread_id,
            "identity": message.identity, "text": message.text, "author_user_id": message.author_user_id,
            "author_name": message.author_name, "queued_at": iso_time(message.created_at)}


def _ref(message: ChatMessage) -> dict:
    return {k: v for k, v in _content(message).items()
            if k in ("chat_message_id", "inbox_id", "conversation_id", "channel_id", "channel_kind", "thread_id",
                     "identity")}


def send(database: Database, outbox: Outbox, settings: Settings, conversations, context: dict, request: dict,
         key: str | None, digest: str, principal: Principal | None) -> tuple[int, dict]:
    """202 with the queued reply; 200 with the one an earlier request with the same key queued."""
    require_key(settings)
    try:
        text = chat.chat_text(request)
    except InvalidEmail as exc:
        raise HttpError(str(exc), {"field": exc.field} if exc.field else None) from exc
    thread = context.get("chat") or {}
    connector = conversations.chat_connector(thread.get("channel_id"))
    if not connector or not connector.get("webhook_url") or not thread.get("thread_id"):
        raise HttpError("this chat conversation's channel has no connector to deliver to")
    conversation = context["conversation"]
    now = utcnow()
    message_id = str(uuid.uuid4())
    author = (principal.email or principal.user_id) if principal is not None else None
    message = ChatMessage(
        id=message_id, idempotency_key=key, request_digest=digest, inbox_id=conversation["inbox_id"],
        conversation_id=conversation["id"], channel_id=connector["channel_id"], channel_kind=connector["kind"],
        thread_id=thread["thread_id"], identity=chat.identity(connector["kind"], thread["thread_id"]),
        webhook_url=connector["webhook_url"], secret_sealed=connector["secret_sealed"],
        body=chat.payload(message_id, conversation["id"], connector["channel_id"], connector["kind"],
                          thread["thread_id"], text, author, iso_time(now)),
        text=text, author_user_id=principal.user_id if principal is not None else None, author_name=author,
        state="queued", attempts=0, next_attempt_at=now, created_at=now)
    try:
        with database.transaction() as session:
            existing = queries.find_idempotent(session, key, digest, ChatMessage)
            if existing is not None:
                return 200, view(existing)
            session.add(message)
            session.flush()
            outbox.record(session, "chat_message_queued", message.id, _content(message))
            return 202, view(message)
    except IntegrityError:  # a concurrent request with the same key won
        with database.transaction() as session:
            existing = queries.find_idempotent(session, key, digest, ChatMessage)
            if existing is None:
                raise
            return 200, view(existing)


# --- delivery ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClaimedChat:
    id: str
    attempt: int
    url: str
    secret: str | None
    body: str


def claim_next(session: Session, outbox: Outbox, settings: Settings) -> ClaimedChat | None:
    """One due reply, leased and counted (committed before the POST): a worker that dies mid-
    request leaves the lease to expire and the reply is POSTed again, with the same webhook-id."""
    now = utcnow()
    query = (select(ChatMessage).where(ChatMessage.state.in_(("queued", "deferred")),
                                       ChatMessage.next_attempt_at <= now,
                                       or_(ChatMessage.claimed_until.is_(None), ChatMessage.claimed_until < now))
             .order_by(ChatMessage.next_attempt_at, ChatMessage.id).limit(1))
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    message = session.execute(query).scalar_one_or_none()
    if message is None:
        return None
    if message.attempts >= settings.max_attempts:
        _fail(session, outbox, message, None, f"retries exhausted after {message.attempts} attempts; last error: "
                                              f"{message.last_error or 'the worker stopped mid-request'}")
        return ClaimedChat(message.id, 0, "", None, "")  # nothing to send; the caller goes on
    message.attempts += 1
    message.claimed_until = now + dt.timedelta(seconds=settings.send_lease_seconds)
    try:
        secret = signed_webhooks.SecretBox(settings.connector_secret_key, SECRET_KEY_VARIABLE).open(
            message.secret_sealed)
    except signed_webhooks.SecretBoxUnavailable as exc:
        # the key is missing or wrong: a configuration error, retried (nothing is sent unsigned)
        message.last_error, message.claimed_until = str(exc), None
        message.state, message.next_attempt_at = "deferred", now + dt.timedelta(
            seconds=backoff_seconds(message.attempts, settings))
        return ClaimedChat(message.id, 0, "", None, "")
    return ClaimedChat(message.id, message.attempts, message.webhook_url, secret, message.body)


def deliver(claimed: ClaimedChat, settings: Settings) -> chat.ChatOutcome:
    """POST the reply, signed now (a fresh timestamp), to a checked address."""
    headers = signed_webhooks.sign(claimed.secret, claimed.id, int(time.time()), claimed.body)
    answer = safe_http.post(claimed.url, claimed.body, headers, allow_private=settings.allow_private_connector_targets,
                            user_agent=signed_webhooks.USER_AGENT)
    return chat.outcome(answer.status, answer.error, answer.retry_after)


def record_outcome(session: Session, outbox: Outbox, claimed: ClaimedChat, outcome: chat.ChatOutcome,
                   settings: Settings) -> ChatMessage:
    now = utcnow()
    message = session.get(ChatMessage, claimed.id, with_for_update=True, populate_existing=True)
    message.claimed_until = None
    if message.state not in ("queued", "deferred"):
        return message  # settled meanwhile (another worker after a lease expiry)
    message.last_status = outcome.status
    if outcome.state == "sent":
        message.state, message.sent_at, message.last_error = "sent", now, None
        outbox.record(session, "chat_message_sent", message.id, {
            **_content(message), "sent_at": iso_time(now), "attempts": message.attempts, "status": outcome.status})
        return message
    message.last_error = outcome.reason[:2000]
    if outcome.state == "failed":
        _fail(session, outbox, message, outcome.status, outcome.reason)
    elif message.attempts >= settings.max_attempts:
        _fail(session, outbox, message, outcome.status,
              f"retries exhausted after {message.attempts} attempts; last error: {outcome.reason}")
    else:
        delay = max(backoff_seconds(message.attempts, settings), min(outcome.retry_after or 0.0,
                                                                     settings.retry_max_seconds))
        message.state, message.next_attempt_at = "deferred", now + dt.timedelta(seconds=delay)
    return message


def _fail(session: Session, outbox: Outbox, message: ChatMessage, status: int | None, reason: str) -> None:
    message.state, message.failed_at, message.claimed_until = "failed", utcnow(), None
    message.last_error = reason[:2000]
    outbox.record(session, "chat_message_failed", message.id, {
        **_ref(message), "attempts": message.attempts, "status": status, "reason": reason[:2000]})


def chat_message_or_none(session: Session, message_id: str) -> dict | None:
    message = session.get(ChatMessage, message_id)
    return view(message) if message is not None else None


def require_key(settings: Settings) -> None:
    """Replies to chat cannot be signed without the key: 503 before anything is stored."""
    if not settings.connector_secret_key:
        raise ServiceUnavailable(f"{SECRET_KEY_VARIABLE} is not set: replies to chat cannot be signed")
