"""Use cases of chat and form channels (docs/channels.md): a channel is created by whoever may
manage inboxes; a connector's signed request (a chat message, a form submission) is verified,
validated, stored and announced in one transaction (the conversation, the message and the events
through the outbox), so nothing a connector was told is stored (2xx) can be lost. Why the
conversations service and not ingest takes these in: docs/architecture.md ("Chat and form intake").

The connector's secret is sealed with MAILROOM_CONNECTOR_SECRET_KEY (SecretBox) and shown once."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conversations import handlers
from conversations.domain import channels, delivery
from conversations.domain.channels import InvalidConnectorRequest
from conversations.domain.conversation import CLOSED, OPEN, new_reply_token
from conversations.domain.placement import ReplyToClosed
from conversations.models import ChannelAttachment, ChatThread, ConnectorChannel, Conversation, Inbox, Message
from conversations.queries import require_view
from conversations.schemas import ChatMessageInputSchema, ConnectorChannelSchema, FormSubmissionInputSchema
from conversations.settings import Settings
from mailroom_shared import safe_http, signed_webhooks
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.auth import Principal
from mailroom_shared.db import Database, is_postgres, parse_time, utcnow
from mailroom_shared.http import (
    HttpError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    get_or_404,
    schema_instance,
)
from mailroom_shared.identities import label
from mailroom_shared.messaging.nameko_adapters import PoisonMessage
from mailroom_shared.messaging.outbox import Outbox
from mailroom_shared.text import iso_time, snippet

T = TypeVar("T")
SECRET_KEY_VARIABLE = "MAILROOM_CONNECTOR_SECRET_KEY"  # noqa: S105 - a variable name, not a secret


class LengthRequired(HttpError):
    status = 411
    code = "length_required"


def secret_box(settings: Settings) -> signed_webhooks.SecretBox:
    try:
        return signed_webhooks.SecretBox(settings.connector_secret_key, SECRET_KEY_VARIABLE)
    except signed_webhooks.SecretBoxUnavailable as exc:
        raise ServiceUnavailable(str(exc)) from None


def _bad(exc: InvalidConnectorRequest) -> HttpError:
    return HttpError(str(exc), {"field": exc.field} if exc.field else None)


def in_transaction(database: Database, change: Callable[[Session], T]) -> T:
    """`change(session)` in a transaction; run once more when a unique key refused it (a
    concurrent request stored the same message or started the same thread first: the second run
    finds it)."""
    try:
        with database.transaction() as session:
            return change(session)
    except IntegrityError:
        with database.transaction() as session:
            return change(session)


# --- channels -------------------------------------------------------------------------------------

def check_webhook_url(url: str | None, settings: Settings) -> str | None:
    """The connector's URL, if it may be reached: resolved now and refused for a private,
    loopback or link-local address (outbound checks again at every delivery)."""
    if url is None:
        return None
    try:
        safe_http.checked_target(url, allow_private=settings.allow_private_connector_targets)
    except safe_http.TargetRefused as exc:
        raise HttpError(f"webhook_url: {exc}", {"field": "webhook_url"}) from None
    return url.strip()


def create_channel(session: Session, principal: Principal, inbox_id: str, body: dict,
                   settings: Settings) -> tuple[ConnectorChannel, str]:
    """A chat or form channel of the inbox and its secret (the only time it is readable)."""
    handlers.require_manage(principal)
    get_or_404(session, Inbox, inbox_id, "inbox")
    try:
        channel_type, kind = channels.checked_type(body["type"], body.get("kind"), body.get("webhook_url"))
    except InvalidConnectorRequest as exc:
        raise _bad(exc) from None
    secret = signed_webhooks.new_secret()
    channel = ConnectorChannel(
        id=str(uuid.uuid4()), inbox_id=inbox_id, type=channel_type, kind=kind, name=body.get("name"),
        webhook_url=body.get("webhook_url"), secret_sealed=secret_box(settings).seal(secret),
        created_by=principal.user_id, created_at=utcnow())
    session.add(channel)
    session.flush()
    return channel, secret


def channel_view(channel: ConnectorChannel, secret: str | None = None) -> dict:
    view = schema_instance(ConnectorChannelSchema).dump({
        "id": channel.id, "inbox_id": channel.inbox_id, "type": channel.type, "kind": channel.kind,
        "name": channel.name, "webhook_url": channel.webhook_url, "created_at": channel.created_at,
        "messages_url": f"/api/channels/{channel.id}/messages",
        "submissions_url": f"/api/channels/{channel.id}/submissions"})
    if secret is not None:
        view["secret"] = secret
    return view


def list_channels(session: Session, principal: Principal, inbox_id: str) -> dict:
    require_view(principal, session.get(Inbox, inbox_id), f"no inbox {inbox_id}")
    rows = session.execute(select(ConnectorChannel).where(ConnectorChannel.inbox_id == inbox_id)
                           .order_by(ConnectorChannel.created_at, ConnectorChannel.id)).scalars()
    return {"items": [channel_view(c) for c in rows], "next_cursor": None}


def connector_for_outbound(session: Session, channel_id: str) -> dict | None:
    """outbound's RPC: where replies to a chat channel go, with its secret still sealed (outbound
    opens it with the same key)."""
    channel = session.get(ConnectorChannel, channel_id)
    if channel is None:
        return None
    return {"channel_id": channel.id, "inbox_id": channel.inbox_id, "type": channel.type, "kind": channel.kind,
            "webhook_url": channel.webhook_url, "secret_sealed": channel.secret_sealed}


# --- a connector's request: bounded, signed, valid --------------------------------------------------

def read_bounded(request, settings: Settings) -> bytes:
    """The request's body, within CONVERSATIONS_CHANNEL_MAX_REQUEST_BYTES: 411 without a
    Content-Length, 413 before anything is read when it says more."""
    length = request.content_length
    if length is None:
        raise LengthRequired("send Content-Length (the body is signed and bounded)")
    if length > settings.channel_max_request_bytes:
        raise PayloadTooLarge(f"the request is larger than {settings.channel_max_request_bytes} bytes")
    raw = request.get_data(cache=False)
    if len(raw) > settings.channel_max_request_bytes:
        raise PayloadTooLarge(f"the request is larger than {settings.channel_max_request_bytes} bytes")
    return raw


def signed_json(session: Session, channel_id: str, channel_type: str, raw: bytes, headers,
                settings: Settings) -> tuple[ConnectorChannel, dict]:
    """The channel and the request's JSON once the signature is right: 404 for an unknown channel
    (or one of the other type), 401 for a missing, wrong or stale signature (checked before the
    body is parsed), 400 for a body that is not a JSON object."""
    channel = session.get(ConnectorChannel, channel_id)
    if channel is None or channel.type != channel_type:
        raise NotFound(f"no {channel_type} channel {channel_id}")
    try:
        signed_webhooks.verify(secret_box(settings).open(channel.secret_sealed), raw, headers)
    except signed_webhooks.BadSignature as exc:
        raise Unauthorized(f"bad signature: {exc}") from None
    except signed_webhooks.SecretBoxUnavailable as exc:
        raise ServiceUnavailable(str(exc)) from None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HttpError("request body must be a JSON object")
    return channel, body


def _accepted(message: Message) -> dict:
    return {"message_id": message.id, "conversation_id": message.conversation_id,
            "external_message_id": message.external_message_id}


def _stored(session: Session, channel: ConnectorChannel, external_message_id: str) -> Message | None:
    return session.execute(select(Message).where(
        Message.connector_channel_id == channel.id,
        Message.external_message_id == external_message_id)).scalar_one_or_none()


def _lock(session: Session, *parts: str) -> None:
    """PostgreSQL: requests for one connector thread are stored one after the other (SQLite
    writes one transaction at a time anyway); the unique keys decide what slips past."""
    if is_postgres(session):
        digest = hashlib.blake2b("\n".join(parts).encode(), digest_size=8).digest()
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": int.from_bytes(digest, "big", signed=True)})


# --- chat ------------------------------------------------------------------------------------------

def receive_chat_message(session: Session, outbox: Outbox, channel: ConnectorChannel, body: dict,
                         settings: Settings) -> tuple[int, dict]:
    """201 with the stored message; 200 with the same answer when the connector's message id was
    stored before (a retry). One conversation per connector thread of the channel."""
    data = schema_instance(ChatMessageInputSchema).load(body)
    try:
        thread_id = channels.normalised_handle(channel.kind, data["thread_id"], "thread_id")
        handle = channels.normalised_handle(channel.kind, data["sender"]["handle"], "sender.handle")
        files = channels.attachments(data["attachments"])
    except InvalidConnectorRequest as exc:
        raise _bad(exc) from None
    if not data["text"].strip() and not files:
        raise HttpError("text or attachments: a message needs one", {"field": "text"})
    _lock(session, channel.id, thread_id)
    existing = _stored(session, channel, data["message_id"])
    if existing is not None:
        return 200, _accepted(existing)
    name = (data["sender"].get("name") or "").strip() or None
    sender = {"name": name, "email": None}
    conversation, events = _chat_conversation(session, channel, thread_id, name, data["text"], handle, settings)
    message = _store(session, channel, conversation, data["message_id"], sender, data["text"], files,
                     conversation.subject, sender_handle=handle)
    identity = {"kind": channels.identity_kind(channel.kind), "value": handle}
    events += _announce(conversation, message, channel, identity, None, name)
    outbox.record_many(session, events)
    return 201, _accepted(message)


def _chat_conversation(session: Session, channel: ConnectorChannel, thread_id: str, name: str | None,
                       first_text: str, handle: str, settings: Settings) -> tuple[Conversation, list]:
    """The thread's conversation (reopened when closed, or continued in a new linked one under
    CONVERSATIONS_REPLY_TO_CLOSED=new), else a new one."""
    thread = session.get(ChatThread, (channel.id, thread_id))
    events: list[tuple[str, str, dict]] = []
    if thread is not None:
        conversation = session.get(Conversation, thread.conversation_id, with_for_update=True,
                                   populate_existing=True)
        if conversation.status != CLOSED:
            return conversation, events
        if settings.reply_to_closed == ReplyToClosed.REOPEN:
            conversation.status, conversation.closed_at = OPEN, None
            events.append(("conversation_reopened", conversation.id, {
                "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "reason": "reply",
                "message_id": None}))
            return conversation, events
    conversation = _new_conversation(session, channel, channels.chat_subject(first_text, name, handle),
                                     contact_email=None, contact_name=name, external_thread_id=thread_id,
                                     reopened_from=thread.conversation_id if thread else None)
    if thread is None:
        session.add(ChatThread(connector_channel_id=channel.id, external_thread_id=thread_id,
                               conversation_id=conversation.id))
    else:
        thread.conversation_id = conversation.id
    events.append(_conversation_created(conversation))
    return conversation, events


def _conversation_created(conversation: Conversation) -> tuple[str, str, dict]:
    """conversation_created as for email, saying what it came in on (e.g. no automatic email
    acknowledgement for a chat)."""
    name, subject, data = handlers._conversation_created(conversation)
    return name, subject, {**data, "channel_type": conversation.channel_type, "channel_kind": conversation.channel_kind}


def _new_conversation(session: Session, channel: ConnectorChannel, subject: str, *, contact_email: str | None,
                      contact_name: str | None, external_thread_id: str | None,
                      reopened_from: str | None = None) -> Conversation:
    now = utcnow()
    conversation = Conversation(
        id=str(uuid.uuid4()), inbox_id=channel.inbox_id, subject=subject, status=OPEN, spam=False,
        reply_token=new_reply_token(), contact_email=contact_email, contact_name=contact_name,
        reopened_from=reopened_from, message_count=0, snippet="", created_at=now, last_message_at=now,
        channel_type=channel.type, channel_kind=channel.kind, connector_channel_id=channel.id,
        external_thread_id=external_thread_id)
    session.add(conversation)
    session.flush()
    return conversation


def _store(session: Session, channel: ConnectorChannel, conversation: Conversation, external_message_id: str,
           sender: dict, text_: str, files: list, subject: str, sender_handle: str | None = None) -> Message:
    message_id = str(uuid.uuid4())
    stored_files, rows = [], []
    for file in files:
        if isinstance(file, channels.LinkedFile):
            stored_files.append({"filename": file.filename, "content_type": file.content_type, "size": file.size,
                                 "url": file.url, "external": True})
            continue
        attachment_id = str(uuid.uuid4())
        rows.append(ChannelAttachment(id=attachment_id, message_id=message_id, filename=file.filename,
                                      content_type=file.content_type, size=len(file.data), data=file.data))
        stored_files.append({"id": attachment_id, "filename": file.filename, "content_type": file.content_type,
                             "size": len(file.data),
                             "url": f"/api/messages/{message_id}/channel-attachments/{attachment_id}"})
    now = utcnow()
    message = Message(
        id=message_id, conversation_id=conversation.id, inbox_id=conversation.inbox_id,
        rfc_message_id=channels.message_key(channel.id, external_message_id), direction="in", intake_id=None,
        channel_address=None, via=channel.type, subject=subject, sender=sender, attributed_to=sender, to=[], cc=[],
        reply_to=[], in_reply_to=[], references=[], text=text_, html=None, html_truncated=False,
        remote_images_blocked=0, snippet=snippet(text_) or ", ".join(f["filename"] for f in stored_files),
        size=len(text_.encode()), full_message_url=None, attachments=stored_files, forward=None,
        flags={"sender_handle": sender_handle} if sender_handle else {},
        date_header=None, received_at=now, created_at=now, connector_channel_id=channel.id,
        external_message_id=external_message_id)
    session.add(message)
    session.flush()  # the message before its attachments' rows, which refer to it
    session.add_all(rows)
    conversation.message_count = (conversation.message_count or 0) + 1
    conversation.last_message_at, conversation.snippet = now, message.snippet
    session.flush()
    return message


def _announce(conversation: Conversation, message: Message, channel: ConnectorChannel, identity: dict | None,
              email: str | None, name: str | None) -> list[tuple[str, str, dict]]:
    """message_added (as for email: timelines of conversations, subscribers) and
    channel_message_received (contacts: who sent it, to resolve the contact and log it)."""
    return [handlers._message_added(conversation, message, None), ("channel_message_received", message.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "message_id": message.id,
        "rfc_message_id": message.rfc_message_id, "channel_id": channel.id, "channel_type": channel.type,
        "channel_kind": channel.kind, "identity": identity, "email": email, "name": name,
        "channel_label": label(identity["kind"], identity["value"]) if identity else email,
        "subject": message.subject, "snippet": message.snippet,
        "attachments": [{k: a.get(k) for k in ("filename", "content_type", "size", "url")}
                        for a in message.attachments or []],
        "received_at": iso_time(message.received_at)})]


# --- forms -----------------------------------------------------------------------------------------

def receive_form_submission(session: Session, outbox: Outbox, channel: ConnectorChannel, body: dict,
                            settings: Settings) -> tuple[int, dict]:
    """A submission starts a conversation with the submitter (replies go to them by email); the
    fields are the message's text. The same submission id twice is stored once."""
    data = schema_instance(FormSubmissionInputSchema).load(body)
    email = try_normalise_email(data["email"])
    if email is None:
        raise HttpError(f"email: not a valid address: {data['email']!r}", {"field": "email"})
    try:
        text_ = channels.form_text(data["fields_"])
        files = channels.attachments(data["attachments"])
    except InvalidConnectorRequest as exc:
        raise _bad(exc) from None
    _lock(session, channel.id, data["submission_id"])
    existing = _stored(session, channel, data["submission_id"])
    if existing is not None:
        return 200, _accepted(existing)
    name = (data.get("name") or "").strip() or None
    subject = " ".join((data.get("subject") or "").split()) or f"{channel.name or 'Form'} submission"
    conversation = _new_conversation(session, channel, subject, contact_email=email, contact_name=name,
                                     external_thread_id=None)
    known = session.get(handlers.KnownContact, email)
    conversation.contact_id = known.contact_id if known else None
    sender = {"name": name, "email": email}
    message = _store(session, channel, conversation, data["submission_id"], sender, text_, files, subject)
    events = [_conversation_created(conversation)]
    events += _announce(conversation, message, channel, None, email, name)
    outbox.record_many(session, events)
    return 201, _accepted(message)


# --- reading an inline attachment --------------------------------------------------------------------

def channel_attachment(session: Session, principal: Principal, message_id: str, attachment_id: str) -> dict:
    message = session.get(Message, message_id)
    require_view(principal, message and session.get(Inbox, message.inbox_id), f"no message {message_id}")
    attachment = session.get(ChannelAttachment, attachment_id)
    if attachment is None or attachment.message_id != message_id:
        raise NotFound(f"no attachment {attachment_id} in message {message_id}")
    return {"data": attachment.data, "content_type": attachment.content_type, "filename": attachment.filename}


# --- our replies to chat (outbound's chat_message_* events) -------------------------------------------

def store_outbound_chat(session: Session, outbox: Outbox, data: dict, state: str, details: dict
                        ) -> handlers.Written | None:
    """Our chat reply in its conversation: one row per reply, whichever of chat_message_queued /
    chat_message_sent arrives first; a redelivery changes nothing but a later state. Stored and
    counted as our emails are (handlers.store_outbound_email's Core statements)."""
    if handlers._advance_delivery(session, data["chat_message_id"], state, details):
        return None
    author = {"name": data.get("author_name"), "email": None}
    row = dict(
        id=data["chat_message_id"], conversation_id=data["conversation_id"],
        rfc_message_id=f"{data['chat_message_id']}@chat-reply.mailroom.invalid", direction="out", intake_id=None,
        channel_address=None, via="outbound", sender=author, attributed_to=author,
        to=[], cc=[], reply_to=[], in_reply_to=[], references=[], text=data["text"], html=None,
        html_truncated=False, remote_images_blocked=0, snippet=snippet(data["text"]), size=None,
        full_message_url=None, attachments=[], forward=None,
        flags=delivery.with_state({"sender_user_id": data.get("author_user_id")}, state, details),
        date_header=None, received_at=parse_time(data.get("queued_at")), created_at=utcnow(),
        connector_channel_id=data["channel_id"], external_message_id=None)
    conversation = handlers._count_message(session, data["conversation_id"], row)
    if conversation is None:
        raise PoisonMessage(f"no conversation {data['conversation_id']}")
    row["inbox_id"], row["subject"] = conversation.inbox_id, conversation.subject
    message = handlers._insert_message(session, row)
    outbox.record(session, *handlers._message_added(conversation, message, None))
    return message


def record_chat_state(session: Session, data: dict, state: str, details: dict) -> None:
    if not handlers._advance_delivery(session, data["chat_message_id"], state, details):
        # retried with backoff: chat_message_queued comes first
        raise handlers.OutboundMessageNotYetStored(f"chat reply {data['chat_message_id']} is not stored yet")
