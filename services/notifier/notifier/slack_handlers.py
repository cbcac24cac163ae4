"""The Slack use cases (write side, no network I/O): connections managed by super admins, one
post recorded per connection for each event it notifies, the Slack worker's claim/outcome steps,
and the Events API callbacks stored once and claimed by the events timer."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass

from marshmallow import ValidationError
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from mailroom_shared.db import aware, conflict_insert, is_postgres, utcnow
from mailroom_shared.http import HttpError, get_or_404
from notifier import handlers, schemas
from notifier.domain import slack
from notifier.domain.vault import Vault
from notifier.models import SlackConnection, SlackEvent, SlackPost, SlackThread
from notifier.settings import Settings

MAX_EVENT_BYTES = 1024 * 1024  # Slack's event callbacks are a few KiB


def require_super_admin(principal) -> None:
    if not getattr(principal, "super_admin", False):
        from mailroom_shared.http import Forbidden
        raise Forbidden("only super admins manage Slack connections")


# --- connections -----------------------------------------------------------------------------------

def _fields(body: dict, *, partial: bool) -> dict:
    try:
        fields = (schemas.SLACK_UPDATE if partial else schemas.SLACK_CREATE).load(body)
    except ValidationError as exc:
        raise HttpError("invalid Slack connection", details=exc.messages) from None
    if "notifications" in fields:
        try:
            fields["notifications"] = slack.normalise_notifications(fields["notifications"])
        except ValueError as exc:
            raise HttpError(f"notifications: {exc}") from None
    return fields


def create_connection(session: Session, principal, body: dict, settings: Settings) -> SlackConnection:
    require_super_admin(principal)
    fields = _fields(body, partial=False)
    vault = handlers._vault(settings)
    existing = session.execute(select(SlackConnection).where(
        SlackConnection.inbox_id == fields["inbox_id"], SlackConnection.channel_id == fields["channel_id"])).first()
    if existing is not None:
        error = HttpError("this inbox is already connected to that channel")
        error.status, error.code = 409, "conflict"
        raise error
    now = utcnow()
    connection = SlackConnection(
        id=str(uuid.uuid4()), inbox_id=fields["inbox_id"], channel_id=fields["channel_id"],
        description=fields.get("description"), notifications=fields.get("notifications", list(slack.NOTIFICATIONS)),
        enabled=fields.get("enabled", True), bot_token_sealed=vault.seal(fields["bot_token"]),
        signing_secret_sealed=vault.seal(fields["signing_secret"]), created_by=principal.user_id,
        created_at=now, updated_at=now)
    session.add(connection)
    session.flush()
    return connection


def update_connection(session: Session, principal, connection_id: str, body: dict,
                      settings: Settings) -> SlackConnection:
    """A partial update; a new bot token or signing secret replaces the stored one (sealed)."""
    require_super_admin(principal)
    connection = get_or_404(session, SlackConnection, connection_id, "Slack connection")
    fields = _fields(body, partial=True)
    if "inbox_id" in fields or "channel_id" in fields:
        raise HttpError("inbox_id and channel_id cannot change: delete the connection and create another")
    for secret, column in (("bot_token", "bot_token_sealed"), ("signing_secret", "signing_secret_sealed")):
        if secret in fields:
            setattr(connection, column, handlers._vault(settings).seal(fields.pop(secret)))
    for key, value in fields.items():
        setattr(connection, key, value)
    connection.updated_at = utcnow()
    return connection


def delete_connection(session: Session, principal, connection_id: str) -> None:
    """The connection, its thread map, its unsent posts and its stored events."""
    require_super_admin(principal)
    connection = get_or_404(session, SlackConnection, connection_id, "Slack connection")
    for model in (SlackPost, SlackThread, SlackEvent):
        session.execute(model.__table__.delete().where(model.connection_id == connection.id))
    session.delete(connection)


# --- notifications to post -------------------------------------------------------------------------

def record_posts(session: Session, envelope: dict, event_type: str, data: dict, settings: Settings) -> int:
    """One pending post per enabled connection of the event's inbox that posts this kind of
    notification (idempotent per (connection, event)). Returns how many were added."""
    kind = slack.NOTIFICATION_OF_EVENT.get(event_type)
    inbox_id = data.get("inbox_id") if isinstance(data, dict) else None
    if kind is None or not inbox_id:
        return 0
    text = slack.notification(event_type, data, settings.conversation_url_template)
    if text is None:
        return 0
    connections = session.execute(select(SlackConnection).where(
        SlackConnection.inbox_id == inbox_id, SlackConnection.enabled.is_(True))).scalars()
    now = utcnow()
    rows = [{"connection_id": c.id, "event_id": str(envelope["id"]), "event_type": event_type,
             "conversation_id": data["conversation_id"], "text": text, "state": "pending", "attempts": 0,
             "in_flight": False, "next_attempt_at": now, "created_at": now}
            for c in connections if kind in (c.notifications or [])]
    if not rows:
        return 0
    statement = conflict_insert(session, SlackPost.__table__).values(rows)
    statement = statement.on_conflict_do_nothing(index_elements=["connection_id", "event_id"])
    return session.execute(statement).rowcount or 0


@dataclass(frozen=True)
class ClaimedPost:
    post_id: int
    attempt: int
    connection_id: str
    channel_id: str
    token: str
    text: str
    thread_ts: str | None  # None: this post starts the conversation's thread
    in_doubt: bool  # an earlier attempt died mid-request: look for it before posting again
    created_at: float  # epoch seconds, where to look from

    @property
    def post_key(self) -> str:
        return f"{self.connection_id}:{self.post_id}"

    def __repr__(self) -> str:  # never log the token
        return f"ClaimedPost(post_id={self.post_id}, attempt={self.attempt}, channel={self.channel_id!r})"


def claim_post(session: Session, settings: Settings) -> ClaimedPost | None:
    """The next due post whose conversation has no earlier unposted one in its connection (posts
    of one conversation go out in order, so its first one starts the thread the others join), on
    a connection that is not rate limited; leased before the request (committed by the caller)."""
    now = utcnow()
    earlier = aliased(SlackPost)
    blocked = exists().where(earlier.connection_id == SlackPost.connection_id,
                             earlier.conversation_id == SlackPost.conversation_id,
                             earlier.state == "pending", earlier.id < SlackPost.id)
    query = (select(SlackPost, SlackConnection)
             .join(SlackConnection, SlackConnection.id == SlackPost.connection_id)
             .where(SlackPost.state == "pending", SlackPost.next_attempt_at <= now, ~blocked,
                    SlackConnection.enabled.is_(True),
                    or_(SlackConnection.rate_limited_until.is_(None), SlackConnection.rate_limited_until <= now))
             .order_by(SlackPost.next_attempt_at, SlackPost.id).limit(1))
    if is_postgres(session):
        query = query.with_for_update(of=SlackPost, skip_locked=True)
    row = session.execute(query).first()
    if row is None:
        return None
    post, connection = row
    in_doubt = bool(post.in_flight)
    post.attempts += 1
    post.in_flight = True
    post.next_attempt_at = now + dt.timedelta(seconds=settings.lease_seconds)
    token = Vault(settings.secret_key).open(connection.bot_token_sealed)
    thread = session.get(SlackThread, (connection.id, post.conversation_id))
    return ClaimedPost(post.id, post.attempts, connection.id, connection.channel_id, token, post.text,
                       thread.thread_ts if thread else None, in_doubt, aware(post.created_at).timestamp())


def record_post_outcome(session: Session, claimed: ClaimedPost, ts: str | None, error: str | None,
                        retry_after: float | None = None, in_doubt: bool = False) -> str:
    """posted (its ts; the first post of a conversation is its thread), or retried later: after
    Retry-After for a 429 (the whole connection waits), else on the backoff. Never dropped.
    `in_doubt`: no answer (a timeout): the next attempt first looks for it in the channel."""
    now = utcnow()
    post = session.get(SlackPost, claimed.post_id, with_for_update=True, populate_existing=True)
    if post is None or post.state != "pending" or post.attempts != claimed.attempt:
        return "stale"
    if ts is not None:
        post.state, post.ts, post.posted_at, post.in_flight, post.next_attempt_at = "posted", ts, now, False, None
        post.last_error = None
        if claimed.thread_ts is None:
            session.execute(conflict_insert(session, SlackThread.__table__).values(
                connection_id=claimed.connection_id, conversation_id=post.conversation_id,
                channel_id=claimed.channel_id, thread_ts=ts, created_at=now,
            ).on_conflict_do_nothing(index_elements=["connection_id", "conversation_id"]))
        return "posted"
    post.in_flight, post.last_error = in_doubt, (error or "")[:2000]
    if retry_after is not None:
        post.attempts -= 1  # a rate limit is no failure of this post
        until = now + dt.timedelta(seconds=retry_after)
        post.next_attempt_at = until
        connection = session.get(SlackConnection, claimed.connection_id, with_for_update=True)
        if connection is not None and (connection.rate_limited_until is None
                                       or aware(connection.rate_limited_until) < until):
            connection.rate_limited_until = until
        return "rate_limited"
    post.next_attempt_at = now + dt.timedelta(seconds=slack.retry_delay(claimed.attempt))
    return "retry"


# --- Events API callbacks --------------------------------------------------------------------------

def _verified_connections(session: Session, raw: bytes, headers, settings: Settings) -> list[SlackConnection]:
    """The enabled connections whose signing secret signed this request (v0, 5-minute window)."""
    vault = Vault(settings.secret_key)
    by_secret: dict[str, list[SlackConnection]] = {}
    for connection in session.execute(select(SlackConnection).where(SlackConnection.enabled.is_(True))).scalars():
        by_secret.setdefault(vault.open(connection.signing_secret_sealed), []).append(connection)
    for secret, connections in by_secret.items():
        try:
            if SignatureVerifier(secret).is_valid_request(raw, dict(headers)):
                return connections
        except (ValueError, UnicodeDecodeError):  # a timestamp that is no number, a body that is no UTF-8
            return []
    return []


def receive_event(session: Session, raw: bytes, headers, settings: Settings) -> dict:
    """What /slack/events answers: the challenge of a url_verification, else {"ok": true} once
    the callback is stored (once per event_id: Slack's retries are answered and add nothing).
    401 when no connection's signing secret signed it."""
    handlers._vault(settings)
    connections = _verified_connections(session, raw, headers, settings)
    if not connections:
        error = HttpError("the request is not signed by a connected Slack app (or is older than 5 minutes)")
        error.status, error.code = 401, "unauthorized"
        raise error
    try:
        payload = json.loads(raw)
    except ValueError:
        raise HttpError("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise HttpError("the body is not a JSON object")
    if payload.get("type") == "url_verification":
        return {"challenge": str(payload.get("challenge") or "")}
    event, event_id = payload.get("event"), payload.get("event_id")
    if payload.get("type") != "event_callback" or not isinstance(event, dict) or not isinstance(event_id, str) \
            or not event_id or len(event_id) > 64:
        return {"ok": True, "ignored": "not an event callback"}
    connection = next((c for c in connections if c.channel_id == event.get("channel")), None)
    if connection is None:
        return {"ok": True, "ignored": "not a connected channel"}
    now = utcnow()
    inserted = session.execute(conflict_insert(session, SlackEvent.__table__).values(
        event_id=event_id, connection_id=connection.id, event=event, state="pending", attempts=0,
        next_attempt_at=now, received_at=now, retries_seen=0,
    ).on_conflict_do_nothing(index_elements=["event_id"])).rowcount
    if not inserted:
        stored = session.get(SlackEvent, event_id, with_for_update=True)
        if stored is not None:
            stored.retries_seen += 1
        return {"ok": True, "duplicate": True}
    return {"ok": True}


@dataclass(frozen=True)
class ClaimedEvent:
    event_id: str
    attempt: int
    connection_id: str
    channel_id: str
    token: str
    event: dict
    conversation_id: str | None  # the conversation whose thread the message is in

    def __repr__(self) -> str:
        return f"ClaimedEvent(event_id={self.event_id!r}, attempt={self.attempt})"


def claim_event(session: Session, settings: Settings) -> ClaimedEvent | None:
    now = utcnow()
    query = (select(SlackEvent, SlackConnection).join(SlackConnection, SlackConnection.id == SlackEvent.connection_id)
             .where(SlackEvent.state == "pending", SlackEvent.next_attempt_at <= now)
             .order_by(SlackEvent.next_attempt_at, SlackEvent.received_at).limit(1))
    if is_postgres(session):
        query = query.with_for_update(of=SlackEvent, skip_locked=True)
    row = session.execute(query).first()
    if row is None:
        return None
    stored, connection = row
    stored.attempts += 1
    stored.next_attempt_at = now + dt.timedelta(seconds=settings.lease_seconds)
    event = dict(stored.event or {})
    thread = None
    if isinstance(event.get("thread_ts"), str):
        # any connection's thread in this channel (two inboxes may post to one channel)
        thread = session.execute(select(SlackThread).where(and_(
            SlackThread.channel_id == connection.channel_id,
            SlackThread.thread_ts == event["thread_ts"]))).scalars().first()
    return ClaimedEvent(stored.event_id, stored.attempts, connection.id, connection.channel_id,
                        Vault(settings.secret_key).open(connection.bot_token_sealed), event,
                        thread.conversation_id if thread else None)


def finish_event(session: Session, claimed: ClaimedEvent, outcome: str, retry: bool = False) -> None:
    """done with what became of it, or tried again on the backoff (Slack or mailroom unreachable)."""
    stored = session.get(SlackEvent, claimed.event_id, with_for_update=True, populate_existing=True)
    if stored is None or stored.attempts != claimed.attempt:
        return
    stored.outcome = outcome[:2000]
    if retry:
        stored.next_attempt_at = utcnow() + dt.timedelta(seconds=slack.retry_delay(claimed.attempt))
    else:
        stored.state, stored.next_attempt_at = "done", None
