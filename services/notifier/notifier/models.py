"""The notifier service's own tables (its own database): the reliability tables every service
has, webhook subscriptions, and the webhook deliveries with their attempts (the delivery log).

`webhook_deliveries` is also the delivery queue: a `pending` row whose next_attempt_at has come
is claimed by a delivery worker (FOR UPDATE SKIP LOCKED on PostgreSQL), which moves
next_attempt_at one lease ahead and commits *before* the HTTP request; a worker that dies
mid-request leaves the row to be claimed again once the lease has passed (at-least-once, the
same webhook-id and body). One delivery per (subscription, event): a redelivered event is
recorded once."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mailroom_shared.db import new_metadata, utcnow
from mailroom_shared.messaging.idempotency import processed_events_table
from mailroom_shared.messaging.outbox import outbox_table

DELIVERY_STATES = ("pending", "delivered", "failed")


class Base(DeclarativeBase):
    metadata = new_metadata()


outbox = outbox_table(Base.metadata)
processed_events = processed_events_table(Base.metadata)


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    events: Mapped[list] = mapped_column(JSON)  # event names, or ["*"]
    inbox_ids: Mapped[list | None] = mapped_column(JSON, nullable=True)  # None: every inbox
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret_sealed: Mapped[str] = mapped_column(Text)  # Fernet token of the whsec_ secret
    # after a rotation the previous secret signs too (a second v1 signature) until it expires
    previous_secret_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    previous_secret_expires_at = mapped_column(DateTime(timezone=True), nullable=True)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_log", "subscription_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))  # the webhook-id header
    event_type: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)  # the CloudEvents envelope as sent, byte for byte
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at = mapped_column(DateTime(timezone=True), nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at = mapped_column(DateTime(timezone=True), nullable=True)
    # the conversation the event is about and its place in this subscription's order of them
    # (the `sequence` attribute added to the envelope; see WebhookSequence)
    conversation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sequence: Mapped[int | None] = mapped_column(Integer, nullable=True)


class WebhookSequence(Base):
    """The last sequence number given to a (subscription, conversation): each event about the
    conversation recorded for the subscription takes the next one, in the order the notifier
    recorded them (docs/integrations.md, "Ordering")."""

    __tablename__ = "webhook_sequences"

    subscription_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_sequence: Mapped[int] = mapped_column(Integer, default=0)


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    started_at = mapped_column(DateTime(timezone=True), default=utcnow)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)  # HTTP status; None: no answer
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)  # delivered, retry, failed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


# --- Slack (docs/integrations.md) -----------------------------------------------------------------

SLACK_NOTIFICATIONS = ("new_conversations", "new_messages", "assignments", "mentions")


class SlackConnection(Base):
    """An inbox connected to a Slack channel: the workspace's bot token and the app's signing
    secret (both sealed with NOTIFIER_SECRET_KEY, never returned) and what to post there.
    `rate_limited_until`: Slack answered 429; nothing is posted with this token before then."""

    __tablename__ = "slack_connections"
    __table_args__ = (UniqueConstraint("inbox_id", "channel_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    inbox_id: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[str] = mapped_column(String(64), index=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    notifications: Mapped[list] = mapped_column(JSON)  # some of SLACK_NOTIFICATIONS
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    bot_token_sealed: Mapped[str] = mapped_column(Text)
    signing_secret_sealed: Mapped[str] = mapped_column(Text)
    rate_limited_until = mapped_column(DateTime(timezone=True), nullable=True)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at = mapped_column(DateTime(timezone=True), default=utcnow)


class SlackThread(Base):
    """The Slack thread of a conversation in a connection's channel: its first post's ts."""

    __tablename__ = "slack_threads"
    __table_args__ = (Index("ix_slack_threads_ts", "channel_id", "thread_ts"),)

    connection_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("slack_connections.id", ondelete="CASCADE"), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(64))
    thread_ts: Mapped[str] = mapped_column(String(32))
    created_at = mapped_column(DateTime(timezone=True), default=utcnow)


class SlackPost(Base):
    """One notification to post, one per (connection, event): the queue of the Slack worker.
    A claim moves next_attempt_at one lease ahead and sets `in_flight` before the request; a
    worker dying mid-request leaves `in_flight` set, so the next claim first looks in the channel
    for the post (its metadata names `post_key`) before posting: never lost, never twice."""

    __tablename__ = "slack_posts"
    __table_args__ = (
        UniqueConstraint("connection_id", "event_id"),
        Index("ix_slack_posts_due", "state", "next_attempt_at"),
        Index("ix_slack_posts_conversation", "connection_id", "conversation_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # the order of posts
    connection_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("slack_connections.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, posted
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    in_flight: Mapped[bool] = mapped_column(Boolean, default=False)
    next_attempt_at = mapped_column(DateTime(timezone=True), nullable=True)
    ts: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at = mapped_column(DateTime(timezone=True), default=utcnow)
    posted_at = mapped_column(DateTime(timezone=True), nullable=True)


class SlackEvent(Base):
    """An Events API callback, verified and stored once per event_id (Slack's retries add
    nothing), then handled by the service's Slack events timer (a reply in a conversation's
    thread: a comment or a chat reply as the Slack user), retried until it is."""

    __tablename__ = "slack_events"
    __table_args__ = (Index("ix_slack_events_due", "state", "next_attempt_at"),)

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    connection_id: Mapped[str] = mapped_column(String(36), ForeignKey("slack_connections.id", ondelete="CASCADE"))
    event: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, done
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at = mapped_column(DateTime(timezone=True), nullable=True)
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at = mapped_column(DateTime(timezone=True), default=utcnow)
    retries_seen: Mapped[int] = mapped_column(Integer, default=0)  # X-Slack-Retry-Num copies answered


class ErasedKey(Base):
    """A key an erased contact was known by (its id, an address, a chat handle), as a one-way
    fingerprint (erasure.fingerprint), and when it was erased (the contact_erased event's time). An
    event produced before that time that names the key is a late copy of the erased person's data
    and is neither delivered nor posted (erasure.py). Kept for erasure.RETENTION, then purged."""

    __tablename__ = "erased_keys"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at = mapped_column(DateTime(timezone=True), nullable=False)
