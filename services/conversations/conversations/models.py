"""The conversations service's own tables (its own database)."""

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
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from conversations.domain import search
from conversations.domain.access import InboxAccess
from mailroom_shared.db import new_metadata, utcnow
from mailroom_shared.messaging.idempotency import processed_events_table
from mailroom_shared.messaging.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = new_metadata()


class Inbox(Base):
    __tablename__ = "inboxes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # stable identity of an inbox configured in CONVERSATIONS_INBOXES_FILE (upserted by key)
    key: Mapped[str | None] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    # digest of the last inbox_updated recorded: seeding re-announces only what changed
    announced_digest: Mapped[str | None] = mapped_column(String(64))
    channels: Mapped[list[Channel]] = relationship(
        back_populates="inbox", order_by=lambda: [Channel.is_primary.desc(), Channel.id], lazy="selectin",
        cascade="all, delete-orphan")
    members: Mapped[list[Member]] = relationship(
        back_populates="inbox", order_by="Member.id", lazy="selectin", cascade="all, delete-orphan")
    # who may view and act (domain/access.py): "everyone" in the account, or only "specific" users and teams
    # (the members above, and every user whose token carries one of `teams`)
    visibility: Mapped[str] = mapped_column(String(16), nullable=False, default="everyone",
                                            server_default="everyone")
    teams: Mapped[list[InboxTeam]] = relationship(
        back_populates="inbox", order_by="InboxTeam.team_id", lazy="selectin", cascade="all, delete-orphan")

    @property
    def access(self) -> InboxAccess:
        """What access to the inbox depends on, for the rules of domain/access.py."""
        return InboxAccess(self.visibility, frozenset(m.user_id for m in self.members),
                           frozenset(t.team_id for t in self.teams))


class InboxTeam(Base):
    """A team (id from the users' tokens) whose users are members of a `specific` inbox."""

    __tablename__ = "inbox_teams"

    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    inbox: Mapped[Inbox] = relationship(back_populates="teams")


class Channel(Base):
    """A team address of an inbox: mail to it lands here, replies go out from it."""

    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), nullable=False, index=True)
    # normalised (mailroom_shared.addresses.normalise_email); one inbox per address
    address: Mapped[str] = mapped_column(String(320), nullable=False, unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    is_primary: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    inbox: Mapped[Inbox] = relationship(back_populates="channels")


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("inbox_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), nullable=False)
    user_id: Mapped[str] = mapped_column(String(100), nullable=False)
    email: Mapped[str] = mapped_column(String(320), nullable=False)  # normalised
    inbox: Mapped[Inbox] = relationship(back_populates="members")


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        # the open / closed views: WHERE inbox_id, spam, status ORDER BY last_message_at DESC, id DESC
        Index("ix_conversations_view_status", "inbox_id", "spam", "status", "last_message_at", "id"),
        # the spam and "all" views
        Index("ix_conversations_view_spam", "inbox_id", "spam", "last_message_at", "id"),
        # "assigned to me" across inboxes
        Index("ix_conversations_view_assignee", "assignee_user_id", "status", "last_message_at", "id"),
        # server-side search (?q=, domain/search.py): trigram GIN on PostgreSQL (pg_trgm)
        # (an expression with its operator class: alembic's autogenerate warns and does not compare it)
        Index("ix_conversations_search_trgm", text(search.CONVERSATION_INDEX_SQL),
              postgresql_using="gin").ddl_if(dialect="postgresql"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id"), nullable=False)
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # "open" | "closed"
    spam: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # random, unguessable; replies to support+<token>@… thread here before any header is looked at
    reply_token: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    contact_email: Mapped[str | None] = mapped_column(String(320), index=True)
    contact_name: Mapped[str | None] = mapped_column(String(320))
    contact_id: Mapped[str | None] = mapped_column(String(36))  # learnt from contacts' contact_created
    # a reply to a closed conversation under CONVERSATIONS_REPLY_TO_CLOSED=new starts a linked one
    reopened_from: Mapped[str | None] = mapped_column(ForeignKey("conversations.id"), index=True)
    # spam and non-spam never mix: a message that threads to a conversation of the other verdict
    # starts its own conversation, linked to the one it matched (for a later "not spam" merge)
    related_conversation_id: Mapped[str | None] = mapped_column(ForeignKey("conversations.id"))
    message_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    snippet: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    last_message_at: Mapped[object] = mapped_column(DateTime(timezone=True), nullable=False)
    closed_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    assignee_user_id: Mapped[str | None] = mapped_column(String(100))
    assigned_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    ticket_id: Mapped[str | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    # what the conversation came in on (docs/channels.md): "email", or a connector channel's
    # "chat" (kind whatsapp / messenger / livechat) or "form"
    channel_type: Mapped[str] = mapped_column(String(8), nullable=False, default="email", server_default="email")
    channel_kind: Mapped[str | None] = mapped_column(String(16))
    connector_channel_id: Mapped[str | None] = mapped_column(String(36))
    # the connector's thread: a phone number, a PSID, a live-chat session (chat only)
    external_thread_id: Mapped[str | None] = mapped_column(String(200))


class ConnectorChannel(Base):
    """A chat or form channel of an inbox: a connector (WhatsApp, Messenger, live chat, a web form)
    posts signed requests to /api/channels/{id}/…; replies to chat go to its webhook URL."""

    __tablename__ = "connector_channels"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), nullable=False, index=True)
    type: Mapped[str] = mapped_column(String(8), nullable=False)  # chat | form
    kind: Mapped[str | None] = mapped_column(String(16))  # chat: whatsapp | messenger | livechat
    name: Mapped[str | None] = mapped_column(String(200))
    webhook_url: Mapped[str | None] = mapped_column(Text)  # where replies to chat go
    secret_sealed: Mapped[str] = mapped_column(Text, nullable=False)  # Fernet (MAILROOM_CONNECTOR_SECRET_KEY)
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class ChatThread(Base):
    """One conversation per connector thread: the row's key decides a race between two first
    messages of a thread; it points at the thread's current conversation."""

    __tablename__ = "chat_threads"

    connector_channel_id: Mapped[str] = mapped_column(ForeignKey("connector_channels.id", ondelete="CASCADE"),
                                                      primary_key=True)
    external_thread_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), nullable=False)


class ChannelAttachment(Base):
    """An attachment a connector sent inline (base64) with a chat message or form submission."""

    __tablename__ = "channel_attachments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), nullable=False,
                                            index=True)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(String(127), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, deferred=True)


class Ticket(Base):
    """A minimal ticket associated with conversations (closing one may close the other)."""

    __tablename__ = "tickets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # "open" | "closed"
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    closed_at: Mapped[object | None] = mapped_column(DateTime(timezone=True))


class Comment(Base):
    """An internal note on a conversation: shown to the inbox's members, never emailed."""

    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_conversation_time", "conversation_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), nullable=False)
    author_user_id: Mapped[str] = mapped_column(String(100), nullable=False)
    author_email: Mapped[str | None] = mapped_column(String(320))
    body: Mapped[str] = mapped_column(Text, nullable=False)  # plain text, never rendered as HTML
    mentions: Mapped[list] = mapped_column(JSON, nullable=False, default=list)  # user ids
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class ConversationMove(Base):
    """History of moves between inboxes (a reply to the old inbox still finds the conversation)."""

    __tablename__ = "conversation_moves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), nullable=False, index=True)
    from_inbox_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)
    to_inbox_id: Mapped[str] = mapped_column(String(36), nullable=False)
    moved_by: Mapped[str | None] = mapped_column(String(100))
    moved_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class ConversationInbox(Base):
    """Another inbox the conversation is shared into (docs/architecture.md, "One email to several
    team inboxes"): the same email reached it too. The home inbox is `conversations.inbox_id`."""

    __tablename__ = "conversation_inboxes"

    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id", ondelete="CASCADE"), primary_key=True,
                                          index=True)
    intake_id: Mapped[str | None] = mapped_column(String(64))  # ingest's id of the copy that shared it
    shared_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class KnownUser(Base):
    """Users as their last verified token described them: who can be assigned or @mentioned in
    an inbox shared with everyone or with teams (explicit members are always known)."""

    __tablename__ = "known_users"

    user_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    team_ids: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    updated_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # de-duplication and threading (In-Reply-To / References) are both scoped to the inbox
        UniqueConstraint("inbox_id", "rfc_message_id"),
        Index("ix_messages_conversation_time", "conversation_id", "received_at", "id"),
        # a connector's message id is stored once per channel (chat and form intake is idempotent)
        UniqueConstraint("connector_channel_id", "external_message_id"),
        # unread state (domain/read_marks.py): "an inbound message newer than the reader's mark"
        Index("ix_messages_inbound_created", "conversation_id", "created_at",
              postgresql_where=text("direction = 'in'"), sqlite_where=text("direction = 'in'")),
        # server-side search (?q=, domain/search.py): trigram GIN on PostgreSQL (pg_trgm)
        Index("ix_messages_search_trgm", text(search.MESSAGE_INDEX_SQL),
              postgresql_using="gin").ddl_if(dialect="postgresql"),
        # the copies of one email in other inboxes (shared conversations), moved conversations
        Index("ix_messages_rfc_message_id", "rfc_message_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), nullable=False)
    inbox_id: Mapped[str] = mapped_column(ForeignKey("inboxes.id"), nullable=False)
    # without angle brackets; inbound ids and (later) our own outbound ids
    rfc_message_id: Mapped[str] = mapped_column(String(998), nullable=False)
    direction: Mapped[str] = mapped_column(String(8), nullable=False)  # "in" | "out"
    intake_id: Mapped[str | None] = mapped_column(String(64), index=True)
    channel_address: Mapped[str | None] = mapped_column(String(320))
    via: Mapped[str | None] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    sender: Mapped[dict | None] = mapped_column(JSON)
    attributed_to: Mapped[dict | None] = mapped_column(JSON)
    to: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    cc: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    reply_to: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    in_reply_to: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    references: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    text: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)  # sanitised by ingest, capped (html_truncated)
    html_truncated: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    remote_images_blocked: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    snippet: Mapped[str] = mapped_column(Text, nullable=False, default="")
    size: Mapped[int | None] = mapped_column(Integer)
    full_message_url: Mapped[str | None] = mapped_column(Text)  # the raw message in ingest's store
    attachments: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    forward: Mapped[dict | None] = mapped_column(JSON)
    flags: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    date_header: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[object] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    connector_channel_id: Mapped[str | None] = mapped_column(String(36))
    external_message_id: Mapped[str | None] = mapped_column(String(200))


class KnownContact(Base):
    """address → contact id, learnt from contacts' contact_created (arrives in any order)."""

    __tablename__ = "known_contacts"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    # indexed: threading asks for every address of a conversation's contact (domain/participants.py)
    contact_id: Mapped[str] = mapped_column(String(36), nullable=False, index=True)


class ContactRedirect(Base):
    """A contact that is gone (issue #17): merged into `survivor_id`, or erased (survivor None).
    Every contact id that contacts' events name goes through it (contact_corrections.py), so a late
    or redelivered event about the merged contact (contact_created, contact_updated) is applied to
    the survivor and one about an erased contact is ignored: nothing points at a gone contact again."""

    __tablename__ = "contact_redirects"

    contact_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    survivor_id: Mapped[str | None] = mapped_column(String(36), index=True)
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


class AwaitedParent(Base):
    """A Message-ID that the first message of a conversation referred to (In-Reply-To/References)
    and that was not stored when it arrived. A parent processed after its reply (concurrent SMTP
    connections, parser workers) finds the conversation here and joins it instead of starting its
    own (domain/placement.adopt). The message's conversation (and inbox, after a move) is read
    through `message_id`."""

    __tablename__ = "awaited_parents"

    rfc_message_id: Mapped[str] = mapped_column(String(998), primary_key=True)  # without angle brackets
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)


class Call(Base):
    """A call logged on a conversation by a member of its inbox (docs/calls.md): the contact's
    number in E.164, its outcome and duration, notes, a recording link. `idempotency_key` is the
    logging user's (`Idempotency-Key`): the same key again logs nothing more."""

    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_conversation_time", "conversation_id", "called_at", "id"),
        UniqueConstraint("logged_by", "idempotency_key"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), nullable=False)
    inbox_id: Mapped[str] = mapped_column(String(36), nullable=False)  # the conversation's when it was logged
    direction: Mapped[str] = mapped_column(String(8), nullable=False)  # inbound | outbound
    phone_number: Mapped[str] = mapped_column(String(32), nullable=False)  # E.164
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    duration_seconds: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    notes: Mapped[str | None] = mapped_column(Text)  # plain text, never rendered as HTML
    recording_url: Mapped[str | None] = mapped_column(Text)  # https, no credentials
    logged_by: Mapped[str] = mapped_column(String(100), nullable=False)
    logged_by_email: Mapped[str | None] = mapped_column(String(320))
    called_at: Mapped[object] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_digest: Mapped[str | None] = mapped_column(String(64))


# the contact's number (queries.contact_phone): the latest call on any conversation of the contact
Index("ix_conversations_contact_id", Conversation.contact_id)


outbox = outbox_table(Base.metadata)
processed_events = processed_events_table(Base.metadata)


class ReadMark(Base):
    """How far one user has read one conversation (domain/read_marks.py): their own state, not
    an act on the conversation. No row: nothing read yet."""

    __tablename__ = "read_marks"

    user_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    # created_at of the newest inbound message there was when the user marked it read (null: none)
    read_up_to: Mapped[object | None] = mapped_column(DateTime(timezone=True))
    # "mark as unread": unread whatever the messages
    marked_unread: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default="false")
    marked_at: Mapped[object] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
