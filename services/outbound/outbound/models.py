"""The outbound service's own tables (its own database).

`emails` is also the delivery queue: a row in state queued/deferred whose next_attempt_at has
come is claimed by a delivery worker (FOR UPDATE SKIP LOCKED on PostgreSQL), which sets a lease
(`claimed_until`) and commits *before* talking SMTP. A worker that dies mid-send leaves the
lease to expire; the email is then sent again with the very same bytes (same Message-ID).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from mailroom_shared.db import new_metadata, utcnow
from mailroom_shared.messaging.idempotency import processed_events_table
from mailroom_shared.messaging.outbox import outbox_table

STATES = ("queued", "deferred", "sent", "failed", "bounced")


class Base(DeclarativeBase):
    metadata = new_metadata()


class Email(Base):
    __tablename__ = "emails"
    __table_args__ = (
        # the delivery worker's claim: WHERE state IN (queued, deferred) ORDER BY next_attempt_at
        Index("ix_emails_due", "state", "next_attempt_at"),
        Index("ix_emails_conversation", "conversation_id", "created_at"),
        Index("ix_emails_inbox", "inbox_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # the client's Idempotency-Key (HTTP header, or RPC argument): the same key sends once
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_digest: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # compose | reply | forward
    inbox_id: Mapped[str] = mapped_column(String(36), nullable=False)
    conversation_id: Mapped[str] = mapped_column(String(36), nullable=False)
    new_conversation: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    reply_token: Mapped[str | None] = mapped_column(String(64))
    replied_message_id: Mapped[str | None] = mapped_column(String(36))
    rfc_message_id: Mapped[str] = mapped_column(String(998), nullable=False, unique=True)
    from_address: Mapped[dict] = mapped_column(JSON, nullable=False)
    to: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    cc: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    bcc: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    reply_to: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    text: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    in_reply_to: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    references: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    automatic: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # the exact bytes handed to the relay, built and verified once when queued; deferred: only
    # the delivery worker's claim reads them (undefer), not every state change and API read
    raw: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, deferred=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    claimed_until: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_smtp_code: Mapped[int | None] = mapped_column(Integer)
    smtp_queue_id: Mapped[str | None] = mapped_column(String(200))
    smtp_response: Mapped[str | None] = mapped_column(Text)
    refused_recipients: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    bounce_reason: Mapped[str | None] = mapped_column(Text)
    bounce_intake_id: Mapped[str | None] = mapped_column(String(64))
    # [{email, status, reason, suppressed}]: the recipients DSNs returned the email for; the email
    # is `bounced` only once every recipient has (None: before this was recorded)
    bounced_recipients: Mapped[list | None] = mapped_column(JSON)
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    sent_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    bounced_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="email", order_by="Attachment.position", lazy="selectin", cascade="all, delete-orphan")


class Attachment(Base):
    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("email_id", "position"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email_id: Mapped[str] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(String(127), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    disposition: Mapped[str] = mapped_column(String(16), nullable=False)  # attachment | inline
    content_id: Mapped[str | None] = mapped_column(String(255))
    # deferred: the email's metadata (events, API, state changes) lists attachments without their bytes
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, deferred=True)
    email: Mapped[Email] = relationship(back_populates="attachments")


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email_id: Mapped[str] = mapped_column(ForeignKey("emails.id", ondelete="CASCADE"), nullable=False, index=True)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[object] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(String(16))  # sent | temporary | permanent; None = died
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[str | None] = mapped_column(Text)
    relay: Mapped[str] = mapped_column(String(300), nullable=False)


class Template(Base):
    """A template; who sees and manages it is its owner scope (domain/scopes.py)."""

    __tablename__ = "templates"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    scope: Mapped[str] = mapped_column(String(16), nullable=False, default="account", server_default="account")
    # scope inbox: the owning inbox; otherwise the inbox it is offered in (None: every inbox)
    inbox_id: Mapped[str | None] = mapped_column(String(36), index=True)
    owner_user_id: Mapped[str | None] = mapped_column(String(200), index=True)  # scope personal: its owner
    subject: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    on_missing: Mapped[str | None] = mapped_column(String(8))  # error | empty; None: the setting
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class Snippet(Base):
    """A snippet; its owner scope as a template's, and its shortcut unique within its owner's
    namespace (`owner_key`: the account, an inbox or a user)."""

    __tablename__ = "snippets"
    __table_args__ = (UniqueConstraint("owner_key", "shortcut"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    shortcut: Mapped[str | None] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16), nullable=False, default="account", server_default="account")
    inbox_id: Mapped[str | None] = mapped_column(String(36), index=True)
    owner_user_id: Mapped[str | None] = mapped_column(String(200), index=True)
    owner_key: Mapped[str] = mapped_column(String(220), nullable=False, default="account", server_default="account")
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    on_missing: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class Suppression(Base):
    """An address an inbox does not send to, after a hard bounce (a 5xx RCPT answer or a DSN with
    action failed and status 5.x.x), until a member of the inbox lifts it. One row per (inbox,
    address): lifting keeps the row (who, when); a new hard bounce suppresses it again."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("inbox_id", "address"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    inbox_id: Mapped[str] = mapped_column(String(36), nullable=False)
    address: Mapped[str] = mapped_column(String(320), nullable=False)  # domain/suppression.normalised
    source: Mapped[str] = mapped_column(String(8), nullable=False)  # smtp | dsn
    status: Mapped[str | None] = mapped_column(String(40))  # 550, 5.1.1 …
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    email_id: Mapped[str | None] = mapped_column(String(36))  # the email that bounced (the last one)
    bounce_intake_id: Mapped[str | None] = mapped_column(String(64))  # ingest's id of the DSN
    bounces: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    last_bounced_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    lifted_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    lifted_by: Mapped[str | None] = mapped_column(String(200))


class AutoAcknowledgement(Base):
    """An inbox's automatic acknowledgement of new conversations (off unless enabled): its template
    (jinja2, sandboxed; the attributes a Template has, so the reply is prepared the same way)."""

    __tablename__ = "auto_acknowledgements"

    inbox_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    subject: Mapped[str | None] = mapped_column(Text)  # None: "Re: <the subject>"
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    period_hours: Mapped[int] = mapped_column(Integer, nullable=False, default=24)
    updated_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

    name = "auto-acknowledgement"  # as a template's, in error messages
    on_missing = "empty"  # a token the new conversation cannot fill is left empty, never a failed send


class AutoAcknowledged(Base):
    """When an inbox last acknowledged a sender (at most once per sender per period)."""

    __tablename__ = "auto_acknowledged"

    inbox_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), primary_key=True)  # domain/suppression.normalised
    last_sent_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    last_email_id: Mapped[str | None] = mapped_column(String(36))


class ChatMessage(Base):
    """A reply to a chat conversation (docs/channels.md), delivered to the connector's webhook URL
    with a Standard Webhooks signature; like `emails`, the row is its own delivery queue (claimed
    under a lease, retried with backoff). Its id is the `webhook-id`, the same on every attempt, so
    a connector de-duplicates a retry."""

    __tablename__ = "chat_messages"
    __table_args__ = (Index("ix_chat_messages_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_digest: Mapped[str | None] = mapped_column(String(64))
    inbox_id: Mapped[str] = mapped_column(String(36), nullable=False)
    conversation_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    channel_id: Mapped[str] = mapped_column(String(36), nullable=False)
    channel_kind: Mapped[str] = mapped_column(String(16), nullable=False)
    thread_id: Mapped[str] = mapped_column(String(200), nullable=False)
    identity: Mapped[dict] = mapped_column(JSON, nullable=False)  # {kind, value}: the contact's chat identity
    webhook_url: Mapped[str] = mapped_column(Text, nullable=False)
    secret_sealed: Mapped[str] = mapped_column(Text, nullable=False)  # as conversations sealed it
    body: Mapped[str] = mapped_column(Text, nullable=False)  # the exact JSON POSTed (signed) on every attempt
    text: Mapped[str] = mapped_column(Text, nullable=False)
    author_user_id: Mapped[str | None] = mapped_column(String(200))
    author_name: Mapped[str | None] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # queued | deferred | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    claimed_until: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    sent_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))


outbox = outbox_table(Base.metadata)
processed_events = processed_events_table(Base.metadata)
