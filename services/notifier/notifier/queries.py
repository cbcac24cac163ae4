"""The notifier's read models: webhook subscriptions (never their secret) and their delivery log."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailroom_shared.db import aware
from mailroom_shared.http import NotFound, decode_cursor, encode_cursor, get_or_404
from mailroom_shared.text import iso_time
from notifier.models import SlackConnection, SlackPost, WebhookAttempt, WebhookDelivery, WebhookSubscription


def subscription_view(subscription: WebhookSubscription, secret: str | None = None) -> dict:
    """A subscription as the API shows it; `secret` only in the answer that created or rotated it."""
    view = {"id": subscription.id, "url": subscription.url, "description": subscription.description,
            "events": list(subscription.events), "inbox_ids": subscription.inbox_ids,
            "enabled": subscription.enabled, "created_by": subscription.created_by,
            "created_at": iso_time(aware(subscription.created_at)),
            "updated_at": iso_time(aware(subscription.updated_at))}
    if secret is not None:
        view["secret"] = secret
    return view


def list_subscriptions(session: Session) -> dict:
    rows = session.execute(select(WebhookSubscription).order_by(WebhookSubscription.created_at,
                                                                WebhookSubscription.id)).scalars()
    return {"items": [subscription_view(s) for s in rows]}


def get_subscription(session: Session, subscription_id: str) -> dict:
    return subscription_view(get_or_404(session, WebhookSubscription, subscription_id, "webhook"))


def _attempt_view(attempt: WebhookAttempt) -> dict:
    return {"attempt": attempt.attempt, "started_at": iso_time(aware(attempt.started_at)),
            "duration_ms": attempt.duration_ms, "status": attempt.status, "outcome": attempt.outcome,
            "error": attempt.error}


def delivery_view(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> dict:
    return {"id": delivery.id, "event_id": delivery.event_id, "event_type": delivery.event_type,
            "state": delivery.state, "attempts": delivery.attempts, "last_status": delivery.last_status,
            "last_error": delivery.last_error, "created_at": iso_time(aware(delivery.created_at)),
            "finished_at": iso_time(aware(delivery.finished_at)),
            "next_attempt_at": iso_time(aware(delivery.next_attempt_at)) if delivery.state == "pending" else None,
            "conversation_id": delivery.conversation_id, "sequence": delivery.sequence,
            "log": [_attempt_view(a) for a in attempts]}


def list_deliveries(session: Session, subscription_id: str, limit: int, cursor: str | None,
                    state: str | None = None) -> dict:
    """The subscription's deliveries, newest first, each with its attempts (the delivery log)."""
    get_or_404(session, WebhookSubscription, subscription_id, "webhook")
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    if state:
        query = query.where(WebhookDelivery.state == state)
    offset = int((decode_cursor(cursor) or {}).get("offset", 0))
    deliveries = list(session.execute(
        query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .offset(max(offset, 0)).limit(limit + 1)).scalars())
    more = len(deliveries) > limit
    deliveries = deliveries[:limit]
    attempts: dict[str, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        for attempt in session.execute(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(attempts)))
                                       .order_by(WebhookAttempt.attempt, WebhookAttempt.id)).scalars():
            attempts[attempt.delivery_id].append(attempt)
    next_cursor = encode_cursor({"offset": offset + limit}) if more else None
    return {"items": [delivery_view(d, attempts[d.id]) for d in deliveries], "next_cursor": next_cursor}


def delivery(session: Session, subscription_id: str, delivery_id: str) -> dict:
    found = session.get(WebhookDelivery, delivery_id)
    if found is None or found.subscription_id != subscription_id:
        raise NotFound("delivery not found")
    attempts = list(session.execute(select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
                                    .order_by(WebhookAttempt.attempt, WebhookAttempt.id)).scalars())
    return delivery_view(found, attempts)


# --- Slack connections (never their token or signing secret) ---------------------------------------

def slack_connection_view(session: Session, connection: SlackConnection) -> dict:
    pending = session.execute(select(func.count()).select_from(SlackPost).where(
        SlackPost.connection_id == connection.id, SlackPost.state == "pending")).scalar_one()
    last_error = session.execute(select(SlackPost.last_error).where(
        SlackPost.connection_id == connection.id, SlackPost.state == "pending", SlackPost.last_error.is_not(None))
        .order_by(SlackPost.id).limit(1)).scalar_one_or_none()
    return {"id": connection.id, "inbox_id": connection.inbox_id, "channel_id": connection.channel_id,
            "description": connection.description, "notifications": list(connection.notifications or []),
            "enabled": connection.enabled, "rate_limited_until": iso_time(aware(connection.rate_limited_until)),
            "pending_posts": pending, "last_error": last_error, "created_by": connection.created_by,
            "created_at": iso_time(aware(connection.created_at)), "updated_at": iso_time(aware(connection.updated_at))}


def list_slack_connections(session: Session, inbox_id: str | None = None) -> dict:
    query = select(SlackConnection).order_by(SlackConnection.created_at, SlackConnection.id)
    if inbox_id:
        query = query.where(SlackConnection.inbox_id == inbox_id)
    return {"items": [slack_connection_view(session, c) for c in session.execute(query).scalars()]}


def get_slack_connection(session: Session, connection_id: str) -> dict:
    return slack_connection_view(session, get_or_404(session, SlackConnection, connection_id, "Slack connection"))
