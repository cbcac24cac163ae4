"""Use cases of the outbound service (the write side). They take a SQLAlchemy session (the unit of
work), the service's outbox and its settings, call the rules in `domain/`, and write: an email,
its delivery-queue row and `email_queued` commit together (transactional outbox), and every later
state change commits with its event. A refused request is a shared HTTP error
(`mailroom_shared.http`) naming the field.

Sending spans two transactions around an RPC, so `send` takes the Database: the context of a
compose, reply or forward (the inbox's From identities, the conversation and the message replied
to) comes from conversations before the transaction that queues the email starts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import bindparam, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, noload

from mailroom_shared.auth import Principal
from mailroom_shared.db import Database, is_postgres, parse_time, utcnow
from mailroom_shared.http import Conflict, Forbidden, HttpError, NotFound, get_or_404, schema_instance
from mailroom_shared.messaging.outbox import Outbox
from mailroom_shared.text import iso_time
from outbound import chat_replies, queries, suppressions
from outbound.domain import forwarding, idempotency, mime, recipients, scopes, templates
from outbound.domain.attachments import attachment_url, parse_attachments
from outbound.domain.delivery import Outcome, backoff_seconds
from outbound.domain.errors import InvalidEmail, invalid
from outbound.domain.headers import HeaderInjection, checked_subject
from outbound.domain.prepared import Prepared, body_of, finish
from outbound.domain.prepared import recipients as requested
from outbound.domain.senders import choose_sender, conversation_reply_address, reply_to
from outbound.models import Attachment, DeliveryAttempt, Email, Snippet, Template
from outbound.queries import find_idempotent  # also auto_ack's (handlers.find_idempotent)
from outbound.schemas import ComposeSchema, ForwardSchema, ReplySchema
from outbound.settings import Settings


def bad_request(exc: InvalidEmail) -> HttpError:
    return HttpError(str(exc), {"field": exc.field} if exc.field else None)


class Conversations(Protocol):
    """What outbound asks conversations (conversations_client.Conversations)."""

    def inbox(self, inbox_id: str, principal: Principal | None = None, *, view: bool = False) -> dict: ...

    def reply_context(self, conversation_id: str, message_id: str | None, include_thread: bool = False,
                      principal: Principal | None = None, *, view: bool = False) -> dict: ...

    def inbox_rights(self, principal: Principal) -> InboxRights: ...


class InboxRights(scopes.InboxRights, Protocol):
    def prefetch(self, inbox_ids) -> None: ...


# --- sending -------------------------------------------------------------------------------------

def send(database: Database, outbox: Outbox, settings: Settings, conversations: Conversations, kind: str,
         target: str, body: dict, key: str | None, principal: Principal | None = None) -> tuple[int, dict]:
    """Compose (target: an inbox), reply or forward (target: a conversation). 202 with the queued
    email; 200 with the email an earlier request with the same Idempotency-Key queued."""
    request = schema_instance(_SEND[kind][0]).load(body)
    try:
        key = idempotency.check_idempotency_key(key)
    except InvalidEmail as exc:
        raise HttpError(str(exc)) from exc
    digest = idempotency.request_digest(kind, target, request)
    existing = _existing(database, key, digest)
    if existing is not None:
        return 200, existing
    context = _context(conversations, kind, target, request, principal)
    if kind == "reply" and chat_replies.is_chat(context):  # to the connector, not by email (docs/channels.md)
        return chat_replies.send(database, outbox, settings, conversations, context, request, key, digest, principal)
    template = template_for_sending(database, conversations, request.get("template_id"), principal)
    try:
        with database.transaction() as session:
            # the key was looked up above; one queued since (a concurrent request, or one that
            # finished during the RPC) makes the INSERT fail on the unique key: answered below
            prepared = _SEND[kind][1](context, request, settings, template)
            suppressions.refuse_suppressed(session, prepared)  # 422 naming each suppressed address
            email = queue_email(session, outbox, prepared, settings, key, digest)
            view = queries.email_view(session, email, attempts=[])  # just queued: no delivery attempt yet
    except InvalidEmail as exc:
        raise bad_request(exc) from exc
    except IntegrityError:
        existing = _existing(database, key, digest)  # a request with the same key won
        if existing is None:
            raise
        return 200, existing
    return 202, view


def _context(conversations: Conversations, kind: str, target: str, request: dict, principal) -> dict:
    if kind == "compose":
        return conversations.inbox(target, principal)
    message_id = request.get("message_id")
    include_thread = kind == "forward" and not message_id  # a forward of the whole conversation
    return conversations.reply_context(target, message_id, include_thread, principal)


def _existing(database: Database, key: str | None, digest: str) -> dict | None:
    if not key:
        return None
    with database.transaction() as session:
        return _existing_in(session, key, digest)


def _existing_in(session: Session, key: str | None, digest: str) -> dict | None:
    email = find_idempotent(session, key, digest)
    return queries.email_view(session, email) if email is not None else None


# --- preparing an email ------------------------------------------------------------------------

def _template_fields(template: Template | None, context: dict, settings: Settings) -> dict:
    """Subject/html/text of the template named in the request (template_for_sending), rendered
    with tokens."""
    if template is None:
        return {}
    try:
        return templates.render_fields(template, context, template.on_missing or settings.template_on_missing,
                                       ("subject", "html", "text"))
    except templates.TemplateRenderError as exc:
        raise InvalidEmail(f"template {template.name!r}: {exc}", "template_id") from exc


def _thread_headers(conversation_id: str, started: dt.datetime, subject: str, is_reply: bool) -> tuple[str, str]:
    topic = recipients.base_subject(subject)
    return topic, mime.thread_index(conversation_id, started, utcnow(), is_reply)


def prepare_compose(inbox: dict, request: dict, settings: Settings, template: Template | None = None) -> Prepared:
    sender = choose_sender(inbox, request.get("from"), None)
    to = requested(request, "to", settings) or []
    if not to:
        raise InvalidEmail("to: at least one recipient is required", "to")
    conversation_id = str(uuid.uuid4())
    token = secrets.token_hex(16)
    context = templates.sending_tokens(
        contact=to[0].as_dict(), inbox_name=inbox.get("name"), sender=sender,
        conversation={"id": conversation_id, "reply_address": conversation_reply_address(sender, token)})
    rendered = _template_fields(template, context, settings)
    subject = checked_subject(request.get("subject") if request.get("subject") is not None
                              else rendered.get("subject"))
    if not subject:
        raise InvalidEmail("subject is required for a new email", "subject")
    topic, index = _thread_headers(conversation_id, utcnow(), subject, False)
    prepared = Prepared(
        kind="compose", inbox_id=inbox["inbox_id"], conversation_id=conversation_id, new_conversation=True,
        reply_token=token, replied_message_id=None, sender=sender, to=to,
        cc=requested(request, "cc", settings) or [], bcc=requested(request, "bcc", settings) or [],
        reply_to=reply_to(sender, token, enabled=settings.reply_to_token), subject=subject,
        body=body_of(request, rendered), in_reply_to=None, references=[], thread_topic=topic, thread_index=index,
        automatic=bool(request.get("automatic")), parts=parse_attachments(request.get("attachments"), settings))
    return finish(prepared, settings)


def _conversation_tokens(context: dict, sender) -> dict:
    conversation = context["conversation"]
    return {"id": conversation["id"], "subject": conversation.get("subject"),
            "reply_address": conversation_reply_address(sender, conversation.get("reply_token"))}


def prepare_reply(context: dict, request: dict, settings: Settings, template: Template | None = None) -> Prepared:
    message = context.get("message")
    if message is None:
        raise InvalidEmail("the conversation has no message to reply to", "message_id")
    conversation = context["conversation"]
    inbox = context["inbox"]
    own = [i["email"] for i in inbox.get("identities") or []]
    defaults = recipients.default_reply_recipients(message, own, reply_all=bool(request.get("reply_all")))
    sender = choose_sender(inbox, request.get("from"), context.get("channel_address"))
    to = requested(request, "to", settings)
    to = defaults.to if to is None else to
    to = recipients.merge(to, requested(request, "add_to", settings) or [])
    cc = requested(request, "cc", settings)
    cc = defaults.cc if cc is None else cc
    token = conversation.get("reply_token")
    context_tokens = templates.sending_tokens(
        contact=to[0].as_dict() if to else conversation.get("contact"),
        conversation=_conversation_tokens(context, sender), inbox_name=inbox.get("name"), sender=sender)
    rendered = _template_fields(template, context_tokens, settings)
    subject_source = request.get("subject") if request.get("subject") is not None else rendered.get("subject")
    subject = checked_subject(subject_source) if subject_source else recipients.reply_subject(
        message.get("subject") or conversation.get("subject"))
    subject = checked_subject(subject)
    topic, index = _thread_headers(conversation["id"], parse_time(conversation.get("created_at")), subject, True)
    prepared = Prepared(
        kind="reply", inbox_id=conversation["inbox_id"], conversation_id=conversation["id"],
        new_conversation=False, reply_token=None, replied_message_id=message["id"], sender=sender, to=to,
        cc=cc, bcc=requested(request, "bcc", settings) or [],
        reply_to=reply_to(sender, token, enabled=settings.reply_to_token), subject=subject,
        body=body_of(request, rendered), in_reply_to=recipients.clean_id(message["rfc_message_id"]),
        references=recipients.thread_references(
            message.get("references") or [], message.get("in_reply_to") or [], message["rfc_message_id"]),
        thread_topic=topic, thread_index=index, automatic=bool(request.get("automatic")),
        parts=parse_attachments(request.get("attachments"), settings))
    return finish(prepared, settings)


def prepare_forward(context: dict, request: dict, settings: Settings, template: Template | None = None) -> Prepared:
    conversation = context["conversation"]
    inbox = context["inbox"]
    messages = [context["message"]] if request.get("message_id") else list(context.get("thread") or [])
    messages = [m for m in messages if m]
    if not messages:
        raise InvalidEmail("nothing to forward: the conversation has no messages", "message_id")
    mode = request.get("mode") or "quote"
    if mode not in forwarding.FORWARD_MODES:
        raise InvalidEmail("mode: quote or attach", "mode")
    sender = choose_sender(inbox, request.get("from"), context.get("channel_address"))
    to = requested(request, "to", settings) or []
    if not to:
        raise InvalidEmail("to: a forward needs at least one recipient", "to")
    tokens = templates.sending_tokens(
        contact=conversation.get("contact"), conversation=_conversation_tokens(context, sender),
        inbox_name=inbox.get("name"), sender=sender)
    rendered = _template_fields(template, tokens, settings)
    last = messages[-1]
    subject_source = request.get("subject") if request.get("subject") is not None else rendered.get("subject")
    subject = checked_subject(subject_source) if subject_source else checked_subject(recipients.forward_subject(
        forwarding.plain(last.get("subject") or conversation.get("subject"))))
    quoted_html = quoted_text = None
    attached: list[mime.AttachedMessage] = []
    if mode == "quote":
        quoted_html, quoted_text = forwarding.quote(messages)
    else:
        attached = [forwarding.rebuilt_original(m) for m in messages]
    note = dict(request)
    if note.get("html") is None and note.get("text") is None and not rendered:
        note["text"] = ""
    topic, index = _thread_headers(conversation["id"], parse_time(conversation.get("created_at")), subject, False)
    prepared = Prepared(
        kind="forward", inbox_id=conversation["inbox_id"], conversation_id=conversation["id"],
        new_conversation=False, reply_token=None, replied_message_id=last["id"], sender=sender, to=to,
        cc=requested(request, "cc", settings) or [], bcc=requested(request, "bcc", settings) or [],
        reply_to=reply_to(sender, conversation.get("reply_token"), enabled=settings.reply_to_token),
        subject=subject, body=body_of(note, rendered, quoted_html=quoted_html, quoted_text=quoted_text),
        in_reply_to=None, references=[], thread_topic=topic, thread_index=index, automatic=False,
        parts=parse_attachments(request.get("attachments"), settings), attached_messages=attached)
    return finish(prepared, settings)


_SEND: dict[str, tuple[type, Callable[[dict, dict, Settings, Template | None], Prepared]]] = {
    "compose": (ComposeSchema, prepare_compose),
    "reply": (ReplySchema, prepare_reply),
    "forward": (ForwardSchema, prepare_forward),
}


# --- queueing ------------------------------------------------------------------------------------

def queue_email(session: Session, outbox: Outbox, prepared: Prepared, settings: Settings,
                idempotency_key: str | None, digest: str | None) -> Email:
    """Build and verify the MIME once, store it with the email and `email_queued`."""
    now = utcnow()
    message_id = mime.new_message_id(settings.message_id_domain)
    try:
        raw = mime.build(mime.Outgoing(
            message_id=message_id, sender=prepared.sender, to=prepared.to, cc=prepared.cc,
            subject=prepared.subject, text=prepared.body.text, html=prepared.body.html, date=now,
            reply_to=prepared.reply_to, in_reply_to=prepared.in_reply_to, references=prepared.references,
            thread_topic=prepared.thread_topic, thread_index=prepared.thread_index,
            automatic=prepared.automatic, origin=settings.origin, parts=prepared.parts,
            attached_messages=prepared.attached_messages))
    except HeaderInjection as exc:
        raise invalid(exc) from exc
    email = Email(
        id=str(uuid.uuid4()), idempotency_key=idempotency_key, request_digest=digest, kind=prepared.kind,
        inbox_id=prepared.inbox_id, conversation_id=prepared.conversation_id,
        new_conversation=prepared.new_conversation, reply_token=prepared.reply_token,
        replied_message_id=prepared.replied_message_id, rfc_message_id=message_id,
        from_address=prepared.sender.as_dict(), to=[m.as_dict() for m in prepared.to],
        cc=[m.as_dict() for m in prepared.cc], bcc=[m.as_dict() for m in prepared.bcc],
        reply_to=[m.as_dict() for m in prepared.reply_to], subject=prepared.subject, text=prepared.body.text,
        html=prepared.body.html, in_reply_to=[prepared.in_reply_to] if prepared.in_reply_to else [],
        references=list(prepared.references), automatic=bool(prepared.automatic), raw=raw, state="queued",
        attempts=0, next_attempt_at=now, refused_recipients=[], created_at=now,
        attachments=[])  # an initialised collection: reading it after the flush loads nothing
    for position, part in enumerate(prepared.parts):
        email.attachments.append(Attachment(
            id=str(uuid.uuid4()), position=position, filename=part.filename, content_type=part.content_type,
            size=len(part.data), sha256=hashlib.sha256(part.data).hexdigest(),
            disposition="inline" if part.inline and prepared.body.html is not None else "attachment",
            content_id=part.content_id, data=part.data))
    session.add(email)
    session.flush()  # the unique idempotency key decides a race: the loser re-reads the winner
    outbox.record(session, "email_queued", email.id, content_payload(email))
    return email


def content_payload(email: Email) -> dict:
    return {
        "email_id": email.id, "inbox_id": email.inbox_id, "conversation_id": email.conversation_id,
        "rfc_message_id": email.rfc_message_id, "kind": email.kind, "new_conversation": email.new_conversation,
        "reply_token": email.reply_token, "replied_message_id": email.replied_message_id,
        "from": email.from_address, "to": email.to, "cc": email.cc, "bcc": email.bcc, "reply_to": email.reply_to,
        "subject": email.subject, "text": email.text, "html": email.html, "in_reply_to": email.in_reply_to,
        "references": email.references, "automatic": email.automatic,
        "attachments": [{"filename": a.filename, "content_type": a.content_type, "size": a.size,
                         "sha256": a.sha256, "disposition": a.disposition, "content_id": a.content_id,
                         "url": attachment_url(email.id, a.id)} for a in email.attachments],
        "queued_at": iso_time(email.created_at),
    }


def _ref(email: Email) -> dict:
    return {"email_id": email.id, "inbox_id": email.inbox_id, "conversation_id": email.conversation_id,
            "rfc_message_id": email.rfc_message_id}


# --- delivery ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claimed:
    email_id: str
    attempt_id: int
    attempt: int
    mail_from: str
    recipients: list[str]
    raw: bytes
    has_attachments: bool = True  # False: record_outcome need not look for any


# A claim's statements, built once (issue #16: building them, and their cache keys, per email cost
# more of SQLAlchemy's time than running them). Core, only the columns a send needs: no Email object
# loaded and flushed per claim. PostgreSQL skips the rows other workers hold; SQLite (one writer at
# a time) has no FOR UPDATE.
_CLAIMABLE_EMAIL = (
    select(Email.id, Email.inbox_id, Email.attempts, Email.from_address, Email.to, Email.cc, Email.bcc, Email.raw,
           exists().where(Attachment.email_id == Email.id).label("has_attachments"))
    .where(Email.state.in_(("queued", "deferred")), Email.next_attempt_at <= bindparam("now"),
           or_(Email.claimed_until.is_(None), Email.claimed_until < bindparam("now")))
    .order_by(Email.next_attempt_at, Email.id).limit(1))
_CLAIMABLE = {True: _CLAIMABLE_EMAIL.with_for_update(skip_locked=True), False: _CLAIMABLE_EMAIL}
_CLAIM = (update(Email).where(Email.id == bindparam("email_id"))
          .values(attempts=bindparam("attempts"), claimed_until=bindparam("claimed_until")))
_NEW_ATTEMPT = (insert(DeliveryAttempt).values(email_id=bindparam("email_id"), attempt=bindparam("attempt"),
                                               started_at=bindparam("started_at"), relay=bindparam("relay"))
                .returning(DeliveryAttempt.id))
_ATTEMPT_FINISHED = (update(DeliveryAttempt).where(DeliveryAttempt.id == bindparam("attempt_id"))
                     .values(finished_at=bindparam("finished_at"), outcome=bindparam("outcome"),
                             smtp_code=bindparam("smtp_code"), response=bindparam("response")))


def claim_next(session: Session, outbox: Outbox, settings: Settings) -> Claimed | None:
    """Claim one due email for sending: set a lease and count the attempt, in a transaction that
    commits before SMTP starts. A worker that dies mid-send leaves the lease to expire, and the
    email is sent again (at-least-once, same bytes and Message-ID). Emails whose attempts are
    used up (e.g. a worker killed on every try) fail instead of being sent again (then the
    Claimed has no bytes: nothing to send)."""
    now = utcnow()
    row = session.execute(_CLAIMABLE[is_postgres(session)], {"now": now}).first()
    if row is None:
        return None
    if row.attempts >= settings.max_attempts:
        email = session.get(Email, row.id)
        _fail(session, outbox, email, None, f"retries exhausted after {email.attempts} attempts; "
                                            f"last error: {email.last_error or 'the worker stopped mid-send'}", now)
        return Claimed(email.id, 0, 0, "", [], b"")  # nothing to send; the caller goes on
    to = suppressions.deliverable(session, row.inbox_id, [a["email"] for a in [*row.to, *row.cc, *row.bcc]])
    if not to:  # queued before they hard-bounced: nobody is left to send it to
        _fail(session, outbox, session.get(Email, row.id), None,
              "not sent: every recipient is on the inbox's suppression list", now)
        return Claimed(row.id, 0, 0, "", [], b"")
    attempts = row.attempts + 1
    session.execute(_CLAIM, {"email_id": row.id, "attempts": attempts,
                             "claimed_until": now + dt.timedelta(seconds=settings.send_lease_seconds)})
    attempt_id = session.execute(_NEW_ATTEMPT, {"email_id": row.id, "attempt": attempts, "started_at": now,
                                                "relay": settings.relay_for(row.from_address["email"]).name}
                                 ).scalar_one()
    return Claimed(row.id, attempt_id, attempts, row.from_address["email"], to, row.raw, bool(row.has_attachments))


def record_outcome(session: Session, outbox: Outbox, claimed: Claimed, outcome: Outcome, settings: Settings) -> Email:
    now = utcnow()
    email = session.get(Email, claimed.email_id, with_for_update=True, populate_existing=True,
                        options=[] if claimed.has_attachments else [noload(Email.attachments)])
    session.execute(_ATTEMPT_FINISHED, {"attempt_id": claimed.attempt_id, "finished_at": now,  # not read first
                                        "outcome": outcome.status, "smtp_code": outcome.code,
                                        "response": outcome.response[:2000]})
    email.claimed_until = None
    if email.state not in ("queued", "deferred"):
        return email  # already settled (another worker after a lease expiry, or a bounce)
    suppressions.record_smtp_refusals(session, email, claimed.recipients, outcome)  # 5xx at RCPT TO
    email.last_smtp_code = outcome.code
    if outcome.status == "sent":
        email.state, email.sent_at = "sent", now
        email.smtp_queue_id, email.smtp_response = outcome.queue_id, outcome.response[:2000]
        email.refused_recipients = list(outcome.refused)
        email.last_error = None
        outbox.record(session, "email_sent", email.id, {
            **content_payload(email), "smtp_queue_id": email.smtp_queue_id, "smtp_response": email.smtp_response,
            "sent_at": iso_time(now), "attempts": email.attempts, "refused_recipients": email.refused_recipients})
        return email
    email.last_error = outcome.response[:2000]
    if outcome.status == "permanent":
        _fail(session, outbox, email, outcome.code, outcome.response, now)
        return email
    if email.attempts >= settings.max_attempts:
        _fail(session, outbox, email, outcome.code,
              f"retries exhausted after {email.attempts} attempts; last error: {outcome.response}", now)
        return email
    email.state = "deferred"
    email.next_attempt_at = now + dt.timedelta(seconds=backoff_seconds(email.attempts, settings))
    outbox.record(session, "email_deferred", email.id, {
        **_ref(email), "attempts": email.attempts, "smtp_code": outcome.code, "reason": outcome.response[:2000],
        "next_attempt_at": iso_time(email.next_attempt_at)})
    return email


def _fail(session: Session, outbox: Outbox, email: Email, code: int | None, reason: str, now) -> None:
    email.state, email.failed_at = "failed", now
    email.claimed_until = None
    email.last_error = reason[:2000]
    outbox.record(session, "email_failed", email.id, {
        **_ref(email), "attempts": email.attempts, "smtp_code": code, "reason": reason[:2000]})


# --- bounces -------------------------------------------------------------------------------------

def record_bounce(session: Session, outbox: Outbox, data: dict) -> list[Email]:
    """A DSN arrived through ingest (delivery_report_received): suppressions.record_bounce (per
    recipient)."""
    return suppressions.record_bounce(session, outbox, data)


# --- templates and snippets ------------------------------------------------------------------------
# Each one has an owner scope (domain/scopes.py): every read, list, render, use in an email and
# write checks it. Whether the caller may view or act in an inbox is conversations' answer; those
# RPCs happen outside the database transactions.

@dataclass(frozen=True)
class SavedKind:
    """Templates or snippets: their table, their writable fields and what they must contain."""

    model: type
    what: str
    fields: tuple[str, ...]
    content: tuple[str, ...]
    empty: str
    view: Callable[[Template | Snippet], dict]

    def has_content(self, item) -> bool:
        return any(getattr(item, name) for name in self.content)


TEMPLATES = SavedKind(Template, "template", ("name", "subject", "html", "text", "on_missing"),
                      ("subject", "html", "text"), "a template needs a subject, html or text", queries.template_view)
SNIPPETS = SavedKind(Snippet, "snippet", ("name", "shortcut", "html", "text", "on_missing"),
                     ("html", "text"), "a snippet needs html or text", queries.snippet_view)


def _allowed(rule: Callable[..., None], *args) -> None:
    """Run a scope rule: what the caller may not see is a 404, what it may not manage a 403."""
    try:
        rule(*args)
    except scopes.Hidden as exc:
        raise NotFound(str(exc)) from exc
    except scopes.Refused as exc:
        raise Forbidden(str(exc)) from exc


def _new_owner(values: dict, principal: Principal, current: scopes.Owner | None = None) -> scopes.Owner:
    try:
        return scopes.new_owner(values, principal, current)
    except InvalidEmail as exc:
        raise bad_request(exc) from exc


def _visible(database: Database, conversations: Conversations, kind: SavedKind, item_id: str,
             principal: Principal):
    """The template or snippet (read in a transaction of its own), if the caller may see it."""
    with database.transaction() as session:
        item = get_or_404(session, kind.model, item_id, kind.what)
    _allowed(scopes.require_visible, scopes.Owner.of(item), principal, conversations.inbox_rights(principal),
             kind.what, item_id)
    return item


def list_saved(database: Database, conversations: Conversations, kind: SavedKind, principal: Principal,
               inbox_id: str | None) -> dict:
    """Those the caller may see, by name; with an inbox, those offered in it and everywhere."""
    with database.transaction() as session:
        items = queries.saved_items(session, kind.model, inbox_id)
    rights = conversations.inbox_rights(principal)
    rights.prefetch(scopes.inboxes_to_ask(scopes.Owner.of(i) for i in items))
    return {"items": [kind.view(i) for i in items if scopes.may_see(scopes.Owner.of(i), principal, rights)],
            "next_cursor": None}


def read_saved(database: Database, conversations: Conversations, kind: SavedKind, item_id: str,
               principal: Principal) -> dict:
    return kind.view(_visible(database, conversations, kind, item_id, principal))


def create_saved(database: Database, conversations: Conversations, kind: SavedKind, values: dict,
                 principal: Principal) -> dict:
    """A new template or snippet in the scope asked for (default: the inbox named, else the
    account), if the caller may manage that scope; it parses, and has content."""
    owner = _new_owner(values, principal)
    _allowed(scopes.require_manage, owner, principal, conversations.inbox_rights(principal), kind.what, None)
    with database.transaction() as session:
        return kind.view(_write(session, kind, None, values, owner))


def update_saved(database: Database, conversations: Conversations, kind: SavedKind, item_id: str, values: dict,
                 principal: Principal) -> dict:
    """Change a template or snippet (also its scope): the caller manages it now, and the scope
    it moves to."""
    with database.transaction() as session:
        current = scopes.Owner.of(get_or_404(session, kind.model, item_id, kind.what))
    owner = _new_owner(values, principal, current)
    rights = conversations.inbox_rights(principal)
    rights.prefetch(scopes.inboxes_to_ask([current, owner]))
    _allowed(scopes.require_manage, current, principal, rights, kind.what, item_id)
    _allowed(scopes.require_manage, owner, principal, rights, kind.what, item_id)
    with database.transaction() as session:
        item = _unchanged(session, kind, item_id, current)
        return kind.view(_write(session, kind, item, values, owner))


def delete_saved(database: Database, conversations: Conversations, kind: SavedKind, item_id: str,
                 principal: Principal) -> None:
    """Delete a template or snippet the caller manages."""
    with database.transaction() as session:
        current = scopes.Owner.of(get_or_404(session, kind.model, item_id, kind.what))
    _allowed(scopes.require_manage, current, principal, conversations.inbox_rights(principal), kind.what, item_id)
    with database.transaction() as session:
        session.delete(_unchanged(session, kind, item_id, current))


def _unchanged(session: Session, kind: SavedKind, item_id: str, checked: scopes.Owner):
    """The item again, locked, still owned as it was when the caller's rights were checked."""
    item = session.get(kind.model, item_id, with_for_update=True)
    if item is None:
        raise NotFound(f"no {kind.what} {item_id}")
    if scopes.Owner.of(item) != checked:
        raise Conflict(f"the {kind.what} was moved to another scope meanwhile; try again")
    return item


def _write(session: Session, kind: SavedKind, item, values: dict, owner: scopes.Owner):
    try:
        templates.check_saved(values)
        now = utcnow()
        if item is None:
            item = kind.model(id=str(uuid.uuid4()), created_at=now)
            session.add(item)
        for name in kind.fields:
            if name in values:
                setattr(item, name, values[name])
        item.scope, item.inbox_id, item.owner_user_id = owner.scope, owner.inbox_id, owner.owner_user_id
        if kind.model is Snippet:
            item.owner_key = scopes.owner_key(owner)
        if not kind.has_content(item):
            raise InvalidEmail(kind.empty, "html")
    except InvalidEmail as exc:
        raise bad_request(exc) from exc
    item.updated_at = now
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a snippet with the shortcut {item.shortcut!r} exists in this scope") from exc
    return item


def render_tokens(conversations: Conversations, args: dict, principal: Principal) -> dict:
    """The tokens of a render request (RenderInputSchema), with the context from conversations:
    the conversation or inbox must be one the caller may view (404 otherwise, as if it did not
    exist); viewing is enough (account-wide admins render too)."""
    if args.get("conversation_id"):
        context = conversations.reply_context(args["conversation_id"], None, principal=principal, view=True)
        return templates.render_tokens(args.get("contact"), reply_context=context)
    if args.get("inbox_id"):
        inbox = conversations.inbox(args["inbox_id"], principal, view=True)
        return templates.render_tokens(args.get("contact"), inbox_identities=inbox)
    return templates.render_tokens(args.get("contact"))


def render_saved(database: Database, conversations: Conversations, kind: SavedKind, item_id: str, args: dict,
                 principal: Principal, settings: Settings) -> dict:
    """A template or snippet the caller may see, rendered for the composer with the tokens of a
    conversation or inbox the caller may view."""
    item = _visible(database, conversations, kind, item_id, principal)
    tokens = render_tokens(conversations, args, principal)
    try:
        return templates.render_saved(item, tokens, item.on_missing or settings.template_on_missing,
                                      with_subject=kind.model is Template)
    except InvalidEmail as exc:
        raise bad_request(exc) from exc


def template_for_sending(database: Database, conversations: Conversations, template_id: str | None,
                         principal: Principal | None) -> Template | None:
    """The template a send request names, if the caller may see it (a 400 naming `template_id`
    otherwise, as for one that does not exist). Another service's RPC (no principal) uses any."""
    if not template_id:
        return None
    with database.transaction() as session:
        template = session.get(Template, template_id)
    if template is None or (principal is not None and not scopes.may_see(
            scopes.Owner.of(template), principal, conversations.inbox_rights(principal))):
        raise bad_request(InvalidEmail(f"template_id: no template {template_id}", "template_id"))
    return template
