"""The ingest service's own tables: the intake log, what it knows of inboxes, mailbox cursors."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mailroom_shared.db import new_metadata, utcnow
from mailroom_shared.messaging.idempotency import processed_events_table
from mailroom_shared.messaging.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = new_metadata()


class Intake(Base):
    """One message received for one inbox channel. The raw bytes are in the blob store under
    `blob_key`; this row is committed before SMTP answers 250 (nothing is lost)."""

    __tablename__ = "intake"
    __table_args__ = (
        # de-duplication: the same Message-ID for the same channel is one message
        UniqueConstraint("channel_address", "dedupe_key"),
        Index("ix_intake_pending", "status", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    channel_address: Mapped[str] = mapped_column(String(320), nullable=False)
    reply_token: Mapped[str | None] = mapped_column(String(64))
    via: Mapped[str] = mapped_column(String(8), nullable=False)  # smtp | imap | http
    dedupe_key: Mapped[str] = mapped_column(String(998), nullable=False)
    blob_key: Mapped[str] = mapped_column(String(128), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    envelope_from: Mapped[str | None] = mapped_column(String(998))
    # stored → processed | quarantined
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="stored")
    # processing attempts, counted before each one (a crash mid-analysis still counts), and the
    # lease that keeps other processors off a message while it is analysed
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    claimed_until: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)
    attachments: Mapped[list | None] = mapped_column(JSON)  # [{sha256, filename, content_type, ...}]
    received_at: Mapped[object] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    processed_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))


class Channel(Base):
    """An inbox's team address (from conversations' inbox_updated): RCPT is accepted only for these."""

    __tablename__ = "channels"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    inbox_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)


class TrustedSender(Base):
    """Members of an inbox: their forwards are attributed to the original sender."""

    __tablename__ = "trusted_senders"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    inbox_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class MailboxCursor(Base):
    __tablename__ = "mailbox_cursors"

    mailbox_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # status (GET /api/ingest/mailboxes/{id}) and the lease: one replica polls a mailbox at a time
    last_poll_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    last_success_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    unreachable_since: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    messages_fetched: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0, server_default="0")
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))


class ApiMailbox(Base):
    """An IMAP mailbox added through the API (mailbox_api.py). Secrets are Fernet-sealed with
    INGEST_MAILBOX_SECRET_KEY and never returned; its cursor and status are in mailbox_cursors."""

    __tablename__ = "api_mailboxes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), nullable=False, index=True)  # the inbox address
    host: Mapped[str] = mapped_column(String(253), nullable=False)
    port: Mapped[int] = mapped_column(Integer, nullable=False)
    tls: Mapped[str] = mapped_column(String(16), nullable=False)  # implicit | starttls | none
    ca_bundle: Mapped[str | None] = mapped_column(Text)  # PEM
    folder: Mapped[str] = mapped_column(String(500), nullable=False)
    username: Mapped[str] = mapped_column(String(320), nullable=False)
    auth: Mapped[str] = mapped_column(String(16), nullable=False)  # password | xoauth2
    password_sealed: Mapped[str | None] = mapped_column(Text)
    token_url: Mapped[str | None] = mapped_column(String(2000))
    client_id: Mapped[str | None] = mapped_column(String(500))
    scope: Mapped[str | None] = mapped_column(String(2000))
    client_secret_sealed: Mapped[str | None] = mapped_column(Text)
    refresh_token_sealed: Mapped[str | None] = mapped_column(Text)
    access_token_sealed: Mapped[str | None] = mapped_column(Text)
    access_token_expires_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[object] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


outbox = outbox_table(Base.metadata)
processed_events = processed_events_table(Base.metadata)
