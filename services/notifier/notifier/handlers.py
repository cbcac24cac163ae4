"""The notifier's use cases (the write side): webhook subscriptions managed by super admins, one
delivery recorded per matching subscription for each public event, and the delivery worker's
claim/outcome steps. Each takes a session (and the settings); none does network I/O."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailroom_shared import safe_http
from mailroom_shared.db import aware, conflict_insert, is_postgres, utcnow
from mailroom_shared.http import Conflict, Forbidden, HttpError, NotFound, ServiceUnavailable, get_or_404
from notifier import schemas
from notifier.domain import retries, sequencing, signing, subscriptions
from notifier.domain.vault import Vault, VaultUnavailable
from notifier.models import WebhookAttempt, WebhookDelivery, WebhookSequence, WebhookSubscription
from notifier.settings import Settings


def require_super_admin(principal) -> None:
    if not getattr(principal, "super_admin", False):
        raise Forbidden("only super admins manage webhooks")


def _vault(settings: Settings) -> Vault:
    try:
        vault = Vault(settings.secret_key)
        vault._need()
    except VaultUnavailable as exc:
        raise ServiceUnavailable(str(exc)) from None
    return vault


def _checked_fields(body: dict, settings: Settings, *, partial: bool) -> dict:
    try:
        body = (schemas.WEBHOOK_UPDATE if partial else schemas.WEBHOOK_CREATE).load(body)
    except ValidationError as exc:
        raise HttpError("invalid webhook", details=exc.messages) from None
    fields: dict = {}
    if "url" in body or not partial:
        try:
            safe_http.parse_url(body.get("url"), allow_http=settings.allow_http)
        except safe_http.TargetRefused as exc:
            raise HttpError(f"url: {exc}") from None
        fields["url"] = body["url"].strip()
    if "events" in body or not partial:
        try:
            fields["events"] = subscriptions.normalise_events(body.get("events"))
        except ValueError as exc:
            raise HttpError(f"events: {exc}") from None
    if "inbox_ids" in body:
        fields["inbox_ids"] = sorted(set(body["inbox_ids"])) if body["inbox_ids"] else None
    for key in ("description", "enabled"):
        if key in body:
            fields[key] = body[key]
    return fields


def create_subscription(session: Session, principal, body: dict, settings: Settings,
                        check_target) -> tuple[WebhookSubscription, str]:
    """A new subscription and its signing secret (returned once, stored sealed). `check_target(url)`
    resolves the host and refuses private targets (TargetRefused)."""
    require_super_admin(principal)
    fields = _checked_fields(body, settings, partial=False)
    _check_reachable(check_target, fields["url"])
    secret = signing.new_secret()
    subscription = WebhookSubscription(
        id=str(uuid.uuid4()), url=fields["url"], description=fields.get("description"), events=fields["events"],
        inbox_ids=fields.get("inbox_ids"), enabled=fields.get("enabled", True),
        secret_sealed=_vault(settings).seal(secret), created_by=principal.user_id,
        created_at=utcnow(), updated_at=utcnow())
    session.add(subscription)
    session.flush()
    return subscription, secret


def _check_reachable(check_target, url: str) -> None:
    try:
        check_target(url)
    except safe_http.TargetRefused as exc:
        raise HttpError(f"url: {exc}") from None


def update_subscription(session: Session, principal, subscription_id: str, body: dict, settings: Settings,
                        check_target) -> WebhookSubscription:
    require_super_admin(principal)
    subscription = get_or_404(session, WebhookSubscription, subscription_id, "webhook")
    fields = _checked_fields(body, settings, partial=True)
    if "url" in fields:
        _check_reachable(check_target, fields["url"])
    for key, value in fields.items():
        setattr(subscription, key, value)
    subscription.updated_at = utcnow()
    return subscription


def rotate_secret(session: Session, principal, subscription_id: str,
                  settings: Settings) -> tuple[WebhookSubscription, str]:
    """A new signing secret (shown once); the old one keeps signing alongside it for 24 hours, so
    receivers can switch without losing a delivery."""
    require_super_admin(principal)
    subscription = get_or_404(session, WebhookSubscription, subscription_id, "webhook")
    secret = signing.new_secret()
    subscription.previous_secret_sealed = subscription.secret_sealed
    subscription.previous_secret_expires_at = utcnow() + dt.timedelta(seconds=signing.ROTATION_OVERLAP_SECONDS)
    subscription.secret_sealed = _vault(settings).seal(secret)
    subscription.updated_at = utcnow()
    return subscription, secret


def delete_subscription(session: Session, principal, subscription_id: str) -> None:
    require_super_admin(principal)
    subscription = get_or_404(session, WebhookSubscription, subscription_id, "webhook")
    session.execute(WebhookAttempt.__table__.delete().where(WebhookAttempt.delivery_id.in_(
        select(WebhookDelivery.id).where(WebhookDelivery.subscription_id == subscription.id))))
    session.execute(WebhookDelivery.__table__.delete().where(WebhookDelivery.subscription_id == subscription.id))
    session.execute(WebhookSequence.__table__.delete().where(WebhookSequence.subscription_id == subscription.id))
    session.delete(subscription)


def redeliver(session: Session, principal, subscription_id: str, delivery_id: str) -> WebhookDelivery:
    """Send a delivery again now, whatever its state, with a fresh attempt budget (the log keeps
    the earlier attempts)."""
    require_super_admin(principal)
    delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if delivery is None or delivery.subscription_id != subscription_id:
        raise NotFound("delivery not found")
    if delivery.state == "erased":  # its person was erased (erasure.py): nothing left to send
        raise Conflict("this delivery's event was erased (GDPR art. 17): it is not sent again")
    delivery.state, delivery.attempts, delivery.finished_at = "pending", 0, None
    delivery.next_attempt_at = utcnow()
    return delivery


def record_event(session: Session, envelope: dict, event_type: str, data: dict) -> int:
    """One pending delivery per enabled subscription that wants this event (idempotent per
    (subscription, event id): a redelivered event adds nothing). An event about a conversation
    takes the subscription's next sequence number for it (the envelope's `sequence` attribute).
    Returns how many were added."""
    inbox_id = data.get("inbox_id") if isinstance(data, dict) else None
    conversation_id = data.get("conversation_id") if isinstance(data, dict) else None
    event_id = str(envelope["id"])
    wanted = [s for s in session.execute(select(WebhookSubscription)
                                         .where(WebhookSubscription.enabled.is_(True))).scalars()
              if subscriptions.wants(s.events, s.inbox_ids, event_type, inbox_id)]
    if not wanted:
        return 0
    already = set(session.execute(select(WebhookDelivery.subscription_id).where(
        WebhookDelivery.event_id == event_id,
        WebhookDelivery.subscription_id.in_([s.id for s in wanted]))).scalars())
    now = utcnow()
    wanted = [s for s in wanted if s.id not in already]
    sequences = _next_sequences(session, [s.id for s in wanted], conversation_id) if conversation_id else {}
    rows = []
    for subscription in wanted:
        sequence = sequences.get(subscription.id)
        rows.append({"id": str(uuid.uuid4()), "subscription_id": subscription.id, "event_id": event_id,
                     "event_type": event_type, "body": sequencing.body(envelope, sequence), "state": "pending",
                     "attempts": 0, "next_attempt_at": now, "created_at": now,
                     "conversation_id": conversation_id, "sequence": sequence})
    if not rows:
        return 0
    statement = conflict_insert(session, WebhookDelivery.__table__).values(rows)
    statement = statement.on_conflict_do_nothing(index_elements=["subscription_id", "event_id"])
    return session.execute(statement).rowcount or 0


def _next_sequences(session: Session, subscription_ids: list[str], conversation_id: str) -> dict[str, int]:
    """Each subscription's next value of the conversation's counter, taken atomically in one
    statement (the upsert locks the rows until the commit, so two consumers recording events of
    one conversation at once get 1 and 2, never 1 twice)."""
    if not subscription_ids:
        return {}
    table = WebhookSequence.__table__
    statement = conflict_insert(session, table).values(
        [{"subscription_id": s, "conversation_id": conversation_id, "last_sequence": 1}
         for s in sorted(subscription_ids)])
    statement = statement.on_conflict_do_update(
        index_elements=["subscription_id", "conversation_id"],
        set_={"last_sequence": table.c.last_sequence + 1}).returning(table.c.subscription_id, table.c.last_sequence)
    return {row.subscription_id: int(row.last_sequence) for row in session.execute(statement)}


@dataclass(frozen=True)
class Claimed:
    delivery_id: str
    attempt: int
    url: str
    secrets: tuple[str, ...]  # the current one, and the previous one during a rotation
    event_id: str
    body: str

    def __repr__(self) -> str:  # never log the secret
        return f"Claimed(delivery_id={self.delivery_id!r}, attempt={self.attempt}, url={self.url!r})"


def claim_next(session: Session, settings: Settings) -> Claimed | None:
    """Claim one due delivery: count the attempt and move it one lease ahead, in a transaction
    that commits before the request is made (a worker dying mid-request leaves it to be claimed
    again after the lease). A delivery whose subscription was disabled waits."""
    now = utcnow()
    query = (select(WebhookDelivery, WebhookSubscription)
             .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
             .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now,
                    WebhookSubscription.enabled.is_(True))
             .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(1))
    if is_postgres(session):
        query = query.with_for_update(of=WebhookDelivery, skip_locked=True)
    row = session.execute(query).first()
    if row is None:
        return None
    delivery, subscription = row
    if delivery.attempts >= settings.max_attempts:  # the worker died on every try
        _finish(session, delivery, "failed", now, delivery.last_status,
                f"attempts used up; last error: {delivery.last_error or 'the worker stopped mid-request'}")
        return Claimed(delivery.id, 0, "", (), delivery.event_id, "")  # nothing to send
    delivery.attempts += 1
    delivery.next_attempt_at = now + dt.timedelta(seconds=settings.lease_seconds)
    # without the key (VaultUnavailable) the claim rolls back and the worker backs off: nothing is lost
    vault = Vault(settings.secret_key)
    secrets = [vault.open(subscription.secret_sealed)]
    expires = aware(subscription.previous_secret_expires_at)
    if subscription.previous_secret_sealed and expires is not None and expires > now:
        secrets.append(vault.open(subscription.previous_secret_sealed))
    return Claimed(delivery.id, delivery.attempts, subscription.url, tuple(secrets), delivery.event_id, delivery.body)


def _finish(session, delivery, state, now, status, error) -> None:
    delivery.state, delivery.finished_at, delivery.next_attempt_at = state, now, None
    delivery.last_status, delivery.last_error = status, error


def record_outcome(session: Session, claimed: Claimed, status: int | None, error: str | None,
                   duration: float, settings: Settings, started_at: dt.datetime, outbox=None) -> str:
    """The attempt in the log and what becomes of the delivery: delivered (2xx), retried later
    (timeout, connection error, 429, 5xx, while the schedule lasts) or failed. A delivery that
    failed for the whole retry schedule disables its subscription (`webhook_disabled`, through
    `outbox`): its receiver is gone, and the next deliveries wait until it is enabled again.
    Returns the outcome."""
    now = utcnow()
    delivery = session.get(WebhookDelivery, claimed.delivery_id, with_for_update=True, populate_existing=True)
    if retries.is_success(status):
        outcome = "delivered"
    elif retries.is_retryable(status) and retries.retry_delay(claimed.attempt, settings.retry_schedule) is not None:
        outcome = "retry"
    else:
        outcome = "failed"
    session.add(WebhookAttempt(delivery_id=claimed.delivery_id, attempt=claimed.attempt, started_at=started_at,
                               duration_ms=int(duration * 1000), status=status, outcome=outcome,
                               error=(error or None) and error[:2000]))
    if delivery is None or delivery.state != "pending" or delivery.attempts != claimed.attempt:
        return outcome  # deleted, settled meanwhile, or redelivered: the newer claim decides
    if outcome == "delivered":
        _finish(session, delivery, "delivered", now, status, None)
    elif outcome == "retry":
        delivery.last_status, delivery.last_error = status, error
        delay = retries.retry_delay(claimed.attempt, settings.retry_schedule)
        delivery.next_attempt_at = now + dt.timedelta(seconds=delay)
    else:
        _finish(session, delivery, "failed", now, status, error)
        if retries.is_retryable(status) and claimed.attempt >= settings.max_attempts:
            _disable(session, delivery, outbox)
    return outcome


def _disable(session: Session, delivery: WebhookDelivery, outbox) -> None:
    subscription = session.get(WebhookSubscription, delivery.subscription_id, with_for_update=True)
    if subscription is None or not subscription.enabled:
        return
    subscription.enabled, subscription.updated_at = False, utcnow()
    if outbox is not None:
        outbox.record(session, "webhook_disabled", subscription.id, {
            "webhook_id": subscription.id, "url": subscription.url, "delivery_id": delivery.id,
            "event_id": delivery.event_id, "attempts": delivery.attempts, "last_status": delivery.last_status,
            "last_error": (delivery.last_error or None) and delivery.last_error[:500]})
