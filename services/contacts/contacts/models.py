"""The contacts service's own tables (its own database)."""

from __future__ import annotations

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from mailroom_shared.db import new_metadata, utcnow
from mailroom_shared.messaging.idempotency import processed_events_table
from mailroom_shared.messaging.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = new_metadata()


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    created_from: Mapped[str] = mapped_column(String(64), nullable=False)
    emails: Mapped[list[ContactEmail]] = relationship(back_populates="contact", order_by="ContactEmail.id",
                                                      lazy="selectin")
    identities: Mapped[list[ContactIdentity]] = relationship(order_by="ContactIdentity.id", lazy="selectin",
                                                             viewonly=True)


class ContactEmail(Base):
    __tablename__ = "contact_emails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False,
                                            index=True)
    # normalised (mailroom_shared.addresses.normalise_email); unique = one contact per address
    email: Mapped[str] = mapped_column(String(320), nullable=False, unique=True)
    contact: Mapped[Contact] = relationship(back_populates="emails")


class ContactIdentity(Base):
    """A chat identity of a contact (docs/channels.md): a phone number in E.164, a Messenger PSID,
    a live-chat handle (mailroom_shared.identities); unique = one contact per identity."""

    __tablename__ = "contact_identities"
    __table_args__ = (UniqueConstraint("kind", "value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False,
                                            index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # phone | messenger | livechat
    value: Mapped[str] = mapped_column(String(200), nullable=False)


class TimelineEntry(Base):
    __tablename__ = "timeline_entries"
    __table_args__ = (
        UniqueConstraint("contact_id", "direction", "rfc_message_id"),
        Index("ix_timeline_entries_contact_time", "contact_id", "occurred_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False)
    direction: Mapped[str] = mapped_column(String(8), nullable=False)  # "in" | "out"
    rfc_message_id: Mapped[str] = mapped_column(String(998), nullable=False)
    intake_id: Mapped[str | None] = mapped_column(String(64), index=True)
    channel_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    snippet: Mapped[str] = mapped_column(Text, nullable=False)
    attachments: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    forwarded_by: Mapped[dict | None] = mapped_column(JSON)
    occurred_at: Mapped[object] = mapped_column(DateTime(timezone=True), nullable=False)
    # chat and form messages: their inbox (who may see the entry); email entries go by channel_address
    inbox_id: Mapped[str | None] = mapped_column(String(36))
    # what the entry is: "message" (email, chat, form), or a "call" logged in conversations (its
    # fields in `call`; docs/calls.md)
    kind: Mapped[str] = mapped_column(String(16), nullable=False, default="message", server_default="message")
    call: Mapped[dict | None] = mapped_column(JSON)


class TimelineEntryChannel(Base):
    """Another inbox address the same email reached (one email to several team inboxes): the
    entry is one, visible to whoever may see any of its inboxes (docs/architecture.md). The first
    address stays in `timeline_entries.channel_address`."""

    __tablename__ = "timeline_entry_channels"

    entry_id: Mapped[str] = mapped_column(ForeignKey("timeline_entries.id", ondelete="CASCADE"), primary_key=True)
    channel_address: Mapped[str] = mapped_column(String(320), primary_key=True, index=True)


class MessageConversation(Base):
    """intake id → conversation id, learnt from conversations' message_added (arrives in any order)."""

    __tablename__ = "message_conversations"

    intake_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(36), nullable=False)


class OwnAddress(Base):
    """Inbox channel addresses (from conversations' inbox_updated): never made into contacts."""

    __tablename__ = "own_addresses"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    inbox_id: Mapped[str] = mapped_column(String(36), nullable=False)


class InboxAccess(Base):
    """Who may see an inbox's mail (from inbox_updated): timeline entries of an inbox that is
    visible to specific users and teams are shown only to them (and to account-wide admins)."""

    __tablename__ = "inbox_access"

    inbox_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    visibility: Mapped[str] = mapped_column(String(16), nullable=False, default="everyone")
    member_user_ids: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    team_ids: Mapped[list] = mapped_column(JSON, nullable=False, default=list)


class HeldMessage(Base):
    """An inbound message whose contact was held back because it was spam. Kept so that when a
    teammate marks its conversation not-spam the contact is created and the timeline is complete."""

    __tablename__ = "held_messages"

    intake_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    name: Mapped[str | None] = mapped_column(String(320))
    data: Mapped[dict] = mapped_column(JSON, nullable=False)  # the message_received data, minus bodies
    held_at: Mapped[object] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)



class ContactErasure(Base):
    """An erasure on request (GDPR art. 17) and its report: what each service erased, as counts
    (no personal data is kept here), filled in as the services confirm (corrections.py)."""

    __tablename__ = "contact_erasures"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    requested_by: Mapped[str] = mapped_column(String(100), nullable=False)
    requested_at: Mapped[object] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    # {service: {kind: count}}; a service absent has not confirmed yet
    report: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    completed_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))

outbox = outbox_table(Base.metadata)
processed_events = processed_events_table(Base.metadata)
