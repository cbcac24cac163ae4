"""Use cases of the outbound service. They take a SQLAlchemy session (the unit of work) and an
outbox; service.py calls them inside one transaction, so an email, its delivery-queue row and the
`email_queued` event commit together (transactional outbox), and every later state change
commits with its event.

The context of a reply or forward (the conversation, the message replied to, the inbox's From
identities) comes from conversations over RPC before the transaction starts; see service.py.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import random
import re
import secrets
import uuid
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, lazyload, undefer

from mailroom_shared.db import is_postgres, parse_time, utcnow
from mailroom_shared.messaging.outbox import Outbox
from outbound.domain import body as domain_body
from outbound.domain import mime as domain_mime
from outbound.domain import recipients as domain_recipients
from outbound.domain import templates as domain_templates
from outbound.domain.headers import HeaderInjection, Mailbox, check_header_value, mailbox, mailboxes
from outbound.models import Attachment, DeliveryAttempt, Email, Snippet, Template
from outbound.settings import Settings
from outbound.smtp import Outcome

_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")
_CONTENT_ID = re.compile(r"^[A-Za-z0-9._%+\-@$]{1,200}$")


class InvalidEmail(ValueError):
    """A send request that cannot be sent as given: the message says exactly why."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class IdempotencyConflict(Exception):
    pass


class NotFoundError(LookupError):
    pass


def _invalid(exc: Exception) -> InvalidEmail:
    return InvalidEmail(str(exc), getattr(exc, "field", None))


# --- idempotency -----------------------------------------------------------------------------

def request_digest(kind: str, target: str, body: dict) -> str:
    canonical = json.dumps({"kind": kind, "target": target, "body": body}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def find_idempotent(session: Session, key: str | None, digest: str) -> Email | None:
    """The email already queued under `key`, or None. The same key with another request is a
    conflict (a client bug), never a second email."""
    if not key:
        return None
    email = session.execute(select(Email).where(Email.idempotency_key == key)).scalar_one_or_none()
    if email is not None and email.request_digest != digest:
        raise IdempotencyConflict("this Idempotency-Key was used for a different request")
    return email


def check_idempotency_key(key: str | None) -> str | None:
    if key is None or key == "":
        return None
    if len(key) > 200 or not key.isprintable():
        raise InvalidEmail("Idempotency-Key: at most 200 printable characters", "Idempotency-Key")
    return key


# --- preparing an email ------------------------------------------------------------------------

@dataclass
class Prepared:
    kind: str
    inbox_id: str
    conversation_id: str
    new_conversation: bool
    reply_token: str | None
    replied_message_id: str | None
    sender: Mailbox
    to: list[Mailbox]
    cc: list[Mailbox]
    bcc: list[Mailbox]
    reply_to: list[Mailbox]
    subject: str
    body: domain_body.Body
    in_reply_to: str | None
    references: list[str]
    thread_topic: str
    thread_index: str
    automatic: bool
    parts: list[domain_mime.Part] = field(default_factory=list)
    attached_messages: list[domain_mime.AttachedMessage] = field(default_factory=list)


def _identities(inbox: dict) -> dict[str, Mailbox]:
    return {i["email"]: Mailbox(email=i["email"], name=i.get("name")) for i in inbox.get("identities") or []}


def choose_sender(inbox: dict, requested, default_email: str | None) -> Mailbox:
    """From: one of the inbox's channel addresses (never any other address)."""
    identities = _identities(inbox)
    if not identities:
        raise InvalidEmail("the inbox has no channel address to send from", "from")
    if requested:
        wanted = mailbox("from", requested)
        if wanted.email not in identities:
            raise InvalidEmail(f"from: {wanted.email} is not an address of this inbox "
                               f"(one of: {', '.join(sorted(identities))})", "from")
        chosen = identities[wanted.email]
        if isinstance(requested, dict) and requested.get("name"):
            chosen = Mailbox(chosen.email, wanted.name)
        return chosen
    if default_email and default_email in identities:
        return identities[default_email]
    primary = inbox.get("primary_address")
    return identities.get(primary) or next(iter(identities.values()))


def reply_address(address: str, token: str | None) -> str | None:
    if not token:
        return None
    local, _, domain = address.rpartition("@")
    return f"{local}+{token}@{domain}"


def parse_attachments(values, settings: Settings) -> list[domain_mime.Part]:
    if not values:
        return []
    if not isinstance(values, list):
        raise InvalidEmail("attachments: give a list", "attachments")
    if len(values) > settings.max_attachments:
        raise InvalidEmail(f"attachments: at most {settings.max_attachments} files", "attachments")
    parts, total = [], 0
    for i, value in enumerate(values):
        where = f"attachments[{i}]"
        if not isinstance(value, dict):
            raise InvalidEmail(f"{where}: give {{filename, content_type, content_base64}}", where)
        filename = value.get("filename")
        if not filename or not isinstance(filename, str):
            raise InvalidEmail(f"{where}.filename is required", where)
        try:
            check_header_value(f"{where}.filename", filename, max_length=255)
        except HeaderInjection as exc:
            raise _invalid(exc) from exc
        if "/" in filename or "\\" in filename:
            raise InvalidEmail(f"{where}.filename: no path separators", where)
        content_type = (value.get("content_type") or "application/octet-stream").strip().lower()
        if not _CONTENT_TYPE.match(content_type):
            raise InvalidEmail(f"{where}.content_type: not a media type", where)
        try:
            data = base64.b64decode(value.get("content_base64") or "", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidEmail(f"{where}.content_base64: not valid base64", where) from exc
        if len(data) > settings.max_attachment_bytes:
            raise InvalidEmail(f"{where} ({filename}): {len(data)} bytes is over the limit of "
                               f"{settings.max_attachment_bytes} bytes per file", where)
        total += len(data)
        if total > settings.max_total_attachment_bytes:
            raise InvalidEmail(f"attachments: {total} bytes in total is over the limit of "
                               f"{settings.max_total_attachment_bytes} bytes", "attachments")
        inline = bool(value.get("inline"))
        content_id = value.get("content_id")
        if content_id is not None:
            content_id = str(content_id).strip("<>")
            if not _CONTENT_ID.match(content_id):
                raise InvalidEmail(f"{where}.content_id: letters, digits and ._%+-@$ only", where)
        if inline and not content_id:
            raise InvalidEmail(f"{where}: an inline image needs a content_id (referenced as cid:…)", where)
        if inline and not content_type.startswith("image/"):
            raise InvalidEmail(f"{where}: only images can be inline", where)
        parts.append(domain_mime.Part(filename=filename, content_type=content_type, data=data, inline=inline,
                                      content_id=content_id))
    ids = [p.content_id for p in parts if p.content_id]
    if len(ids) != len(set(ids)):
        raise InvalidEmail("attachments: a content_id is used twice", "attachments")
    return parts


def _check_cids(body: domain_body.Body, parts: list[domain_mime.Part]) -> None:
    referenced = domain_body.cid_references(body.html)
    available = {p.content_id for p in parts if p.inline}
    missing = referenced - available
    if missing:
        raise InvalidEmail(f"html references cid:{', cid:'.join(sorted(missing))} but no inline attachment "
                           f"has that content_id", "html")


def _template_fields(session: Session, body: dict, context: dict, settings: Settings) -> dict:
    """Subject/html/text of the template named in the request, rendered with tokens."""
    template_id = body.get("template_id")
    if not template_id:
        return {}
    template = session.get(Template, template_id)
    if template is None:
        raise InvalidEmail(f"template_id: no template {template_id}", "template_id")
    on_missing = template.on_missing or settings.template_on_missing
    try:
        return {
            "subject": domain_templates.render(template.subject, context, on_missing=on_missing, field="subject"),
            "html": domain_templates.render(template.html, context, on_missing=on_missing, html=True, field="html"),
            "text": domain_templates.render(template.text, context, on_missing=on_missing, field="text"),
        }
    except domain_templates.TemplateRenderError as exc:
        raise InvalidEmail(f"template {template.name!r}: {exc}", "template_id") from exc


def _body(body: dict, rendered: dict, *, quoted_html: str | None = None, quoted_text: str | None = None
          ) -> domain_body.Body:
    html = body.get("html") if body.get("html") is not None else rendered.get("html")
    text = body.get("text") if body.get("text") is not None else rendered.get("text")
    try:
        inserts = domain_body.parse_inserts(body.get("inserts"))
        return domain_body.compose_body(html=html, text=text, inserts=inserts, quoted_html=quoted_html,
                                        quoted_text=quoted_text)
    except domain_body.InvalidBody as exc:
        raise InvalidEmail(str(exc), "body") from exc


def _subject(value, field_name: str = "subject") -> str:
    if value is None:
        return ""
    try:
        return check_header_value(field_name, value).strip()
    except HeaderInjection as exc:
        raise _invalid(exc) from exc


def _recipients(body: dict, name: str, settings: Settings) -> list[Mailbox] | None:
    if body.get(name) is None:
        return None
    try:
        return mailboxes(name, body[name], limit=settings.max_recipients)
    except ValueError as exc:
        raise _invalid(exc) from exc


def _finish(prepared: Prepared, settings: Settings) -> Prepared:
    to, cc, bcc = domain_recipients.final_recipients(prepared.to, prepared.cc, prepared.bcc)
    if not to:
        raise InvalidEmail("to: at least one recipient is required", "to")
    if len(to) + len(cc) + len(bcc) > settings.max_recipients:
        raise InvalidEmail(f"at most {settings.max_recipients} recipients in all", "to")
    prepared.to, prepared.cc, prepared.bcc = to, cc, bcc
    _check_cids(prepared.body, prepared.parts)
    return prepared


def _thread_headers(conversation_id: str, started: dt.datetime, subject: str, is_reply: bool) -> tuple[str, str]:
    topic = domain_recipients.base_subject(subject)
    return topic, domain_mime.thread_index(conversation_id, started, utcnow(), is_reply)



def prepare_compose(session: Session, inbox: dict, body: dict, settings: Settings) -> Prepared:
    sender = choose_sender(inbox, body.get("from"), None)
    to = _recipients(body, "to", settings) or []
    if not to:
        raise InvalidEmail("to: at least one recipient is required", "to")
    conversation_id = str(uuid.uuid4())
    token = secrets.token_hex(16)
    context = domain_templates.token_context(
        contact=to[0].as_dict(), inbox={"name": inbox.get("name"), "address": sender.email},
        conversation={"id": conversation_id, "reply_address": reply_address(sender.email, token)},
        sender=sender.as_dict())
    rendered = _template_fields(session, body, context, settings)
    subject = _subject(body.get("subject") if body.get("subject") is not None else rendered.get("subject"))
    if not subject:
        raise InvalidEmail("subject is required for a new email", "subject")
    topic, index = _thread_headers(conversation_id, utcnow(), subject, False)
    prepared = Prepared(
        kind="compose", inbox_id=inbox["inbox_id"], conversation_id=conversation_id, new_conversation=True,
        reply_token=token, replied_message_id=None, sender=sender, to=to,
        cc=_recipients(body, "cc", settings) or [], bcc=_recipients(body, "bcc", settings) or [],
        reply_to=_reply_to(sender, token, settings), subject=subject, body=_body(body, rendered),
        in_reply_to=None, references=[], thread_topic=topic, thread_index=index,
        automatic=bool(body.get("automatic")), parts=parse_attachments(body.get("attachments"), settings))
    return _finish(prepared, settings)


def _reply_to(sender: Mailbox, token: str | None, settings: Settings) -> list[Mailbox]:
    if not settings.reply_to_token or not token:
        return []
    return [Mailbox(email=reply_address(sender.email, token), name=sender.name)]


def reply_defaults(context: dict, reply_all: bool) -> dict:
    """What the reply form starts with: To, CC, From and Subject (GET …/replies/defaults)."""
    message = context.get("message")
    if message is None:
        raise InvalidEmail("the conversation has no message to reply to", "message_id")
    own = [i["email"] for i in context["inbox"].get("identities") or []]
    defaults = domain_recipients.default_reply_recipients(message, own, reply_all=reply_all)
    sender = choose_sender(context["inbox"], None, context.get("channel_address"))
    return {"to": [m.as_dict() for m in defaults.to], "cc": [m.as_dict() for m in defaults.cc],
            "from": sender.as_dict(), "subject": domain_recipients.reply_subject(
                message.get("subject") or context["conversation"].get("subject")),
            "message_id": message["id"],
            "identities": [{"email": i["email"], "name": i.get("name")} for i in context["inbox"]["identities"]]}


def _conversation_tokens(context: dict, sender: Mailbox) -> dict:
    conversation = context["conversation"]
    return {"id": conversation["id"], "subject": conversation.get("subject"),
            "reply_address": reply_address(sender.email, conversation.get("reply_token"))}


def prepare_reply(session: Session, context: dict, body: dict, settings: Settings) -> Prepared:
    message = context.get("message")
    if message is None:
        raise InvalidEmail("the conversation has no message to reply to", "message_id")
    conversation = context["conversation"]
    inbox = context["inbox"]
    own = [i["email"] for i in inbox.get("identities") or []]
    defaults = domain_recipients.default_reply_recipients(message, own, reply_all=bool(body.get("reply_all")))
    sender = choose_sender(inbox, body.get("from"), context.get("channel_address"))
    to = _recipients(body, "to", settings)
    to = defaults.to if to is None else to
    to = domain_recipients.merge(to, _recipients(body, "add_to", settings) or [])
    cc = _recipients(body, "cc", settings)
    cc = defaults.cc if cc is None else cc
    token = conversation.get("reply_token")
    context_tokens = domain_templates.token_context(
        contact=to[0].as_dict() if to else conversation.get("contact"),
        conversation=_conversation_tokens(context, sender),
        inbox={"name": inbox.get("name"), "address": sender.email}, sender=sender.as_dict())
    rendered = _template_fields(session, body, context_tokens, settings)
    subject_source = body.get("subject") if body.get("subject") is not None else rendered.get("subject")
    subject = _subject(subject_source) if subject_source else domain_recipients.reply_subject(
        message.get("subject") or conversation.get("subject"))
    subject = _subject(subject)
    topic, index = _thread_headers(conversation["id"], parse_time(conversation.get("created_at")), subject, True)
    prepared = Prepared(
        kind="reply", inbox_id=conversation["inbox_id"], conversation_id=conversation["id"],
        new_conversation=False, reply_token=None, replied_message_id=message["id"], sender=sender, to=to,
        cc=cc, bcc=_recipients(body, "bcc", settings) or [], reply_to=_reply_to(sender, token, settings),
        subject=subject, body=_body(body, rendered), in_reply_to=domain_recipients.clean_id(message["rfc_message_id"]),
        references=domain_recipients.thread_references(
            message.get("references") or [], message.get("in_reply_to") or [], message["rfc_message_id"]),
        thread_topic=topic, thread_index=index, automatic=bool(body.get("automatic")),
        parts=parse_attachments(body.get("attachments"), settings))
    return _finish(prepared, settings)


def _plain(value) -> str:
    """A header value taken from stored inbound mail, made safe to show or to put in a header."""
    return re.sub(r"[\x00-\x1f\x7f\u2028\u2029]", " ", str(value or "")).strip()


def _who(address: dict | None) -> str:
    if not address:
        return ""
    name, email = _plain(address.get("name")), _plain(address.get("email"))
    return f"{name} <{email}>" if name and email else (email or name)


def _quote(messages: list[dict]) -> tuple[str, str]:
    html_parts, text_parts = [], []
    for message in messages:
        fields = [("From", _who(message.get("from") or message.get("sender"))),
                  ("Date", _plain(message.get("date") or message.get("received_at"))),
                  ("Subject", _plain(message.get("subject"))),
                  ("To", ", ".join(_who(a) for a in message.get("to") or []))]
        if message.get("cc"):
            fields.append(("Cc", ", ".join(_who(a) for a in message["cc"])))
        header_text = "\n".join(f"{k}: {v}" for k, v in fields)
        header_html = "<br>".join(f"{k}: {domain_body.html_lib.escape(v)}" for k, v in fields)
        text = message.get("text") or (domain_body.html_to_text(message["html"]) if message.get("html") else "")
        html = message.get("html") or domain_body.text_to_html(text)
        text_parts.append(f"---------- Forwarded message ---------\n{header_text}\n\n{text}")
        html_parts.append(f"<p>---------- Forwarded message ---------<br>{header_html}</p>"
                          f"<blockquote>{html}</blockquote>")
    return "".join(html_parts), "\n\n".join(text_parts)


def _rebuilt_original(message: dict) -> domain_mime.AttachedMessage:
    """The original as message/rfc822 from what conversations stored (headers and bodies; the
    raw bytes stay in ingest's blob store)."""
    from email.message import EmailMessage
    from email.policy import SMTP

    original = EmailMessage(policy=SMTP.clone(cte_type="7bit"))
    for name, value in (("From", _who(message.get("from") or message.get("sender"))),
                        ("To", ", ".join(_who(a) for a in message.get("to") or [])),
                        ("Cc", ", ".join(_who(a) for a in message.get("cc") or [])),
                        ("Date", _plain(message.get("date"))), ("Subject", _plain(message.get("subject"))),
                        ("Message-ID", f"<{_plain(message.get('rfc_message_id'))}>")):
        if value and value != "<>":
            try:
                original[name] = value
            except (ValueError, TypeError, IndexError):
                continue  # an unparseable stored value: the quoted text still shows it
    text = message.get("text") or (domain_body.html_to_text(message["html"]) if message.get("html") else "")
    original.set_content(text or "\n", charset="utf-8", cte="quoted-printable")
    if message.get("html"):
        original.add_alternative(message["html"], subtype="html", charset="utf-8", cte="quoted-printable")
    subject = _plain(message.get("subject")) or "message"
    safe = re.sub(r"[^\w .-]+", "_", subject)[:80].strip() or "message"
    return domain_mime.AttachedMessage(data=original.as_bytes(), filename=f"{safe}.eml")


def prepare_forward(session: Session, context: dict, body: dict, settings: Settings) -> Prepared:
    conversation = context["conversation"]
    inbox = context["inbox"]
    messages = [context["message"]] if body.get("message_id") else list(context.get("thread") or [])
    messages = [m for m in messages if m]
    if not messages:
        raise InvalidEmail("nothing to forward: the conversation has no messages", "message_id")
    mode = body.get("mode") or "quote"
    if mode not in ("quote", "attach"):
        raise InvalidEmail("mode: quote or attach", "mode")
    sender = choose_sender(inbox, body.get("from"), context.get("channel_address"))
    to = _recipients(body, "to", settings) or []
    if not to:
        raise InvalidEmail("to: a forward needs at least one recipient", "to")
    tokens = domain_templates.token_context(
        contact=conversation.get("contact"), conversation=_conversation_tokens(context, sender),
        inbox={"name": inbox.get("name"), "address": sender.email}, sender=sender.as_dict())
    rendered = _template_fields(session, body, tokens, settings)
    last = messages[-1]
    subject_source = body.get("subject") if body.get("subject") is not None else rendered.get("subject")
    subject = _subject(subject_source) if subject_source else _subject(domain_recipients.forward_subject(
        _plain(last.get("subject") or conversation.get("subject"))))
    quoted_html = quoted_text = None
    attached: list[domain_mime.AttachedMessage] = []
    if mode == "quote":
        quoted_html, quoted_text = _quote(messages)
    else:
        attached = [_rebuilt_original(m) for m in messages]
    note = dict(body)
    if note.get("html") is None and note.get("text") is None and not rendered:
        note["text"] = ""
    topic, index = _thread_headers(conversation["id"], parse_time(conversation.get("created_at")), subject, False)
    prepared = Prepared(
        kind="forward", inbox_id=conversation["inbox_id"], conversation_id=conversation["id"],
        new_conversation=False, reply_token=None, replied_message_id=last["id"], sender=sender, to=to,
        cc=_recipients(body, "cc", settings) or [], bcc=_recipients(body, "bcc", settings) or [],
        reply_to=_reply_to(sender, conversation.get("reply_token"), settings), subject=subject,
        body=_body(note, rendered, quoted_html=quoted_html, quoted_text=quoted_text),
        in_reply_to=None, references=[], thread_topic=topic, thread_index=index, automatic=False,
        parts=parse_attachments(body.get("attachments"), settings), attached_messages=attached)
    return _finish(prepared, settings)


# --- queueing ------------------------------------------------------------------------------------

def attachment_url(email_id: str, attachment_id: str) -> str:
    return f"/api/outbound/emails/{email_id}/attachments/{attachment_id}"


def queue_email(session: Session, outbox: Outbox, prepared: Prepared, settings: Settings,
                idempotency_key: str | None, digest: str | None) -> Email:
    """Build and verify the MIME once, store it with the email and `email_queued`."""
    now = utcnow()
    message_id = domain_mime.new_message_id(settings.message_id_domain)
    try:
        raw = domain_mime.build(domain_mime.Outgoing(
            message_id=message_id, sender=prepared.sender, to=prepared.to, cc=prepared.cc,
            subject=prepared.subject, text=prepared.body.text, html=prepared.body.html, date=now,
            reply_to=prepared.reply_to, in_reply_to=prepared.in_reply_to, references=prepared.references,
            thread_topic=prepared.thread_topic, thread_index=prepared.thread_index,
            automatic=prepared.automatic, origin=settings.origin, parts=prepared.parts,
            attached_messages=prepared.attached_messages))
    except HeaderInjection as exc:
        raise _invalid(exc) from exc
    email = Email(
        id=str(uuid.uuid4()), idempotency_key=idempotency_key, request_digest=digest, kind=prepared.kind,
        inbox_id=prepared.inbox_id, conversation_id=prepared.conversation_id,
        new_conversation=prepared.new_conversation, reply_token=prepared.reply_token,
        replied_message_id=prepared.replied_message_id, rfc_message_id=message_id,
        from_address=prepared.sender.as_dict(), to=[m.as_dict() for m in prepared.to],
        cc=[m.as_dict() for m in prepared.cc], bcc=[m.as_dict() for m in prepared.bcc],
        reply_to=[m.as_dict() for m in prepared.reply_to], subject=prepared.subject, text=prepared.body.text,
        html=prepared.body.html, in_reply_to=[prepared.in_reply_to] if prepared.in_reply_to else [],
        references=list(prepared.references), automatic=prepared.automatic, raw=raw, state="queued",
        attempts=0, next_attempt_at=now, refused_recipients=[], created_at=now)
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
        "queued_at": _iso(email.created_at),
    }


def _ref(email: Email) -> dict:
    return {"email_id": email.id, "inbox_id": email.inbox_id, "conversation_id": email.conversation_id,
            "rfc_message_id": email.rfc_message_id}


def _iso(value) -> str | None:
    if value is None:
        return None
    return parse_time(value).isoformat()


# --- delivery ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claimed:
    email_id: str
    attempt_id: int
    attempt: int
    mail_from: str
    recipients: list[str]
    raw: bytes


def claim_next(session: Session, outbox: Outbox, settings: Settings, relay_name) -> Claimed | None:
    """Claim one due email for sending: set a lease and count the attempt, in a transaction that
    commits before SMTP starts. A worker that dies mid-send leaves the lease to expire, and the
    email is sent again (at-least-once, same bytes and Message-ID). Emails whose attempts are
    used up (e.g. a worker killed on every try) fail instead of being sent again."""
    now = utcnow()
    query = (select(Email).where(Email.state.in_(("queued", "deferred")), Email.next_attempt_at <= now,
                                 or_(Email.claimed_until.is_(None), Email.claimed_until < now))
             .options(undefer(Email.raw), lazyload(Email.attachments))
             .order_by(Email.next_attempt_at, Email.id).limit(1))
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    email = session.execute(query).scalar_one_or_none()
    if email is None:
        return None
    if email.attempts >= settings.max_attempts:
        _fail(session, outbox, email, None, f"retries exhausted after {email.attempts} attempts; "
                                            f"last error: {email.last_error or 'the worker stopped mid-send'}", now)
        return Claimed(email.id, 0, 0, "", [], b"")  # nothing to send; the caller goes on
    email.attempts += 1
    email.claimed_until = now + dt.timedelta(seconds=settings.send_lease_seconds)
    attempt = DeliveryAttempt(email_id=email.id, attempt=email.attempts, started_at=now,
                              relay=relay_name(email.from_address["email"]))
    session.add(attempt)
    session.flush()
    recipients = [a["email"] for a in [*email.to, *email.cc, *email.bcc]]
    return Claimed(email.id, attempt.id, email.attempts, email.from_address["email"], recipients, email.raw)


def backoff_seconds(attempt: int, settings: Settings) -> float:
    delay = min(settings.retry_base_seconds * (2 ** max(0, attempt - 1)), settings.retry_max_seconds)
    return delay * random.uniform(1.0, 1.1)


def record_outcome(session: Session, outbox: Outbox, claimed: Claimed, outcome: Outcome, settings: Settings) -> Email:
    now = utcnow()
    email = session.get(Email, claimed.email_id, with_for_update=True, populate_existing=True)
    attempt = session.get(DeliveryAttempt, claimed.attempt_id)
    if attempt is not None:
        attempt.finished_at, attempt.outcome = now, outcome.status
        attempt.smtp_code, attempt.response = outcome.code, outcome.response[:2000]
    email.claimed_until = None
    if email.state not in ("queued", "deferred"):
        return email  # already settled (another worker after a lease expiry, or a bounce)
    email.last_smtp_code = outcome.code
    if outcome.status == "sent":
        email.state, email.sent_at = "sent", now
        email.smtp_queue_id, email.smtp_response = outcome.queue_id, outcome.response[:2000]
        email.refused_recipients = list(outcome.refused)
        email.last_error = None
        outbox.record(session, "email_sent", email.id, {
            **content_payload(email), "smtp_queue_id": email.smtp_queue_id, "smtp_response": email.smtp_response,
            "sent_at": _iso(now), "attempts": email.attempts, "refused_recipients": email.refused_recipients})
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
        "next_attempt_at": _iso(email.next_attempt_at)})
    return email


def _fail(session: Session, outbox: Outbox, email: Email, code: int | None, reason: str, now) -> None:
    email.state, email.failed_at = "failed", now
    email.claimed_until = None
    email.last_error = reason[:2000]
    outbox.record(session, "email_failed", email.id, {
        **_ref(email), "attempts": email.attempts, "smtp_code": code, "reason": reason[:2000]})


# --- bounces -------------------------------------------------------------------------------------

_STATUS = re.compile(r"^.*\b[45]\.\d{1,3}\.\d{1,3}\b.*$", re.MULTILINE)


def bounce_reason(data: dict) -> str:
    text = data.get("text") or ""
    match = _STATUS.search(text)
    if match:
        return " ".join(match.group(0).split())[:500]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return (first or data.get("subject") or "delivery status notification")[:500]


def record_bounce(session: Session, outbox: Outbox, data: dict) -> list[Email]:
    """A DSN arrived through ingest: the sent emails it returns are bounced."""
    flags = data.get("flags") or {}
    ids = [domain_recipients.clean_id(i) for i in data.get("bounced_message_ids") or []]
    if not flags.get("bounce") or not ids:
        return []
    bounced = []
    for email in session.execute(select(Email).where(Email.rfc_message_id.in_(ids)).with_for_update()).scalars():
        if email.state in ("bounced", "failed"):
            continue
        email.state, email.bounced_at = "bounced", utcnow()
        email.claimed_until = None
        email.bounce_reason = bounce_reason(data)
        email.bounce_intake_id = data.get("intake_id")
        outbox.record(session, "email_bounced", email.id, {
            **_ref(email), "bounce_intake_id": data.get("intake_id") or "", "reason": email.bounce_reason,
            "bounce_raw_url": data.get("raw_url")})
        bounced.append(email)
    return bounced


# --- templates and snippets ------------------------------------------------------------------------

def _check_template(values: dict) -> None:
    for name in ("subject", "html", "text"):
        try:
            domain_templates.check_syntax(values.get(name), name)
        except domain_templates.TemplateRenderError as exc:
            raise InvalidEmail(str(exc), name) from exc
    if values.get("subject") is not None:
        _subject(values["subject"])


def save_template(session: Session, values: dict, template: Template | None = None) -> Template:
    _check_template(values)
    now = utcnow()
    if template is None:
        template = Template(id=str(uuid.uuid4()), created_at=now)
        session.add(template)
    for name in ("name", "inbox_id", "subject", "html", "text", "on_missing"):
        if name in values:
            setattr(template, name, values[name])
    if not template.html and not template.text and not template.subject:
        raise InvalidEmail("a template needs a subject, html or text", "html")
    template.updated_at = now
    session.flush()
    return template


def save_snippet(session: Session, values: dict, snippet: Snippet | None = None) -> Snippet:
    _check_template(values)
    now = utcnow()
    if snippet is None:
        snippet = Snippet(id=str(uuid.uuid4()), created_at=now)
        session.add(snippet)
    for name in ("name", "shortcut", "inbox_id", "html", "text", "on_missing"):
        if name in values:
            setattr(snippet, name, values[name])
    if not snippet.html and not snippet.text:
        raise InvalidEmail("a snippet needs html or text", "html")
    snippet.updated_at = now
    session.flush()
    return snippet


def render_saved(item: Template | Snippet, context: dict, settings: Settings) -> dict:
    on_missing = item.on_missing or settings.template_on_missing
    try:
        result = {
            "html": domain_templates.render(item.html, context, on_missing=on_missing, html=True, field="html"),
            "text": domain_templates.render(item.text, context, on_missing=on_missing, field="text"),
        }
        if isinstance(item, Template):
            result["subject"] = domain_templates.render(item.subject, context, on_missing=on_missing,
                                                        field="subject")
    except domain_templates.TemplateRenderError as exc:
        raise InvalidEmail(str(exc), "template") from exc
    if result.get("html") is not None:
        result["html"] = domain_body.sanitise_html(result["html"])
    if result.get("subject") is not None:
        _subject(result["subject"])
    return result
