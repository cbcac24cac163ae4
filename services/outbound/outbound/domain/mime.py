"""Builds the MIME message of an outgoing email (plain Python, no IO).

- a stable Message-ID per email (`<uuid@MAILROOM_MESSAGE_ID_DOMAIN>`), generated once when the
  email is queued and kept with the built bytes: every retry, and a resend after a crash,
  sends the very same bytes;
- Date; In-Reply-To and References (capped, folded by the SMTP policy) on replies; optional
  Reply-To with the conversation's reply token; Thread-Topic / Thread-Index for Outlook;
- RFC 2047 for non-ASCII display names and subjects, RFC 2231 for non-ASCII filenames (the
  email package's SMTP policy does both);
- `Auto-Submitted: auto-generated` (+ `X-Auto-Response-Suppress: All`) only on automatic mail;
- `X-Mailroom-Origin` so that ingest recognises our own mail if it ever comes back (loop);
- never a Bcc header: BCC recipients exist only in the SMTP envelope.

`build()` serialises with `email.policy.SMTP`, parses the bytes again and checks that the header
set is exactly the intended one (headers.verify_message) before returning them. The parse for that
check walks the structure with the compat32 parser and reads the checked headers with the default
policy's strict one (half of a build's time went into rebuilding Content-Type header objects).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime

from outbound.domain.headers import Intended, Mailbox, check_header_value, verify_message

SMTP_POLICY = policy.SMTP.clone(cte_type="7bit")  # 7-bit clean: no 8BITMIME needed from the relay
ORIGIN_HEADER = "X-Mailroom-Origin"


@dataclass(frozen=True)
class Part:
    """An attachment or inline image."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)
    inline: bool = False
    content_id: str | None = None  # without angle brackets


@dataclass(frozen=True)
class AttachedMessage:
    """An original message attached to a forward (message/rfc822)."""

    data: bytes = field(repr=False)
    filename: str = "forwarded.eml"


@dataclass
class Outgoing:
    message_id: str  # without angle brackets
    sender: Mailbox
    to: list[Mailbox]
    cc: list[Mailbox]
    subject: str
    text: str
    html: str | None
    date: dt.datetime
    reply_to: list[Mailbox] = field(default_factory=list)
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    thread_topic: str | None = None
    thread_index: str | None = None
    automatic: bool | str = False  # a str: the Auto-Submitted value (`auto-replied` for an acknowledgement)
    origin: str = "mailroom"
    parts: list[Part] = field(default_factory=list)
    attached_messages: list[AttachedMessage] = field(default_factory=list)


def new_message_id(domain: str) -> str:
    return f"{uuid.uuid4().hex}@{domain}"


def thread_index(conversation_id: str, conversation_started: dt.datetime, now: dt.datetime,
                 is_reply: bool) -> str:
    """Outlook's Thread-Index: 22 bytes (6 of a FILETIME + a 16-byte GUID) identify the thread;
    a reply appends a 5-byte child block. Derived from the conversation, so every email of one
    conversation shares the thread part."""
    filetime = int((conversation_started - dt.datetime(1601, 1, 1, tzinfo=dt.UTC)).total_seconds() * 10_000_000)
    header = filetime.to_bytes(8, "big")[:6] + hashlib.sha256(conversation_id.encode()).digest()[:16]
    if is_reply:
        delta = max(0, int((now - conversation_started).total_seconds() * 10_000_000)) >> 18
        header += ((delta & 0x7FFFFFFF) << 8 | (uuid.uuid4().int & 0xFF)).to_bytes(5, "big")
    return base64.b64encode(header).decode("ascii")


def _addresses(boxes: list[Mailbox]):
    return [b.to_address() for b in boxes]


def build(outgoing: Outgoing) -> bytes:
    """The serialised message (CRLF line ends), verified by parsing it again."""
    for name, value in (("subject", outgoing.subject), ("thread_topic", outgoing.thread_topic or ""),
                        ("origin", outgoing.origin)):
        check_header_value(name, value)
    msg = EmailMessage(policy=SMTP_POLICY)
    intended: list[str] = []

    def put(name: str, value) -> None:
        msg[name] = value
        intended.append(name.lower())

    put("Message-ID", f"<{outgoing.message_id}>")
    put("Date", format_datetime(outgoing.date.astimezone(dt.UTC)))
    put("From", outgoing.sender.to_address())
    put("To", _addresses(outgoing.to))
    if outgoing.cc:
        put("Cc", _addresses(outgoing.cc))
    if outgoing.reply_to:
        put("Reply-To", _addresses(outgoing.reply_to))
    put("Subject", outgoing.subject)
    if outgoing.in_reply_to:
        put("In-Reply-To", f"<{outgoing.in_reply_to}>")
    if outgoing.references:
        put("References", " ".join(f"<{r}>" for r in outgoing.references))
    if outgoing.thread_topic is not None:
        put("Thread-Topic", outgoing.thread_topic)
    if outgoing.thread_index:
        put("Thread-Index", outgoing.thread_index)
    if outgoing.automatic:
        put("Auto-Submitted", outgoing.automatic if isinstance(outgoing.automatic, str) else "auto-generated")
        put("X-Auto-Response-Suppress", "All")
    put(ORIGIN_HEADER, outgoing.origin)

    text = outgoing.text if outgoing.text.endswith("\n") else outgoing.text + "\n"
    msg.set_content(text, subtype="plain", charset="utf-8", cte=_cte(text))
    if outgoing.html is not None:
        msg.add_alternative(outgoing.html, subtype="html", charset="utf-8", cte=_cte(outgoing.html))
        html_part = msg.get_payload()[1]
        for part in outgoing.parts:
            if part.inline:
                maintype, subtype = part.content_type.split("/", 1)
                html_part.add_related(part.data, maintype=maintype, subtype=subtype,
                                      cid=f"<{part.content_id}>", filename=part.filename, disposition="inline")
    for part in outgoing.parts:
        if part.inline and outgoing.html is not None:
            continue
        maintype, subtype = part.content_type.split("/", 1)
        msg.add_attachment(part.data, maintype=maintype, subtype=subtype, filename=part.filename,
                           cid=f"<{part.content_id}>" if part.content_id else None)
    for attached in outgoing.attached_messages:
        original = BytesParser(policy=policy.default).parsebytes(attached.data)
        msg.add_attachment(original, filename=attached.filename)
    # set_content puts Content-Type, Content-Transfer-Encoding, MIME-Version after our headers;
    # a multipart message (add_alternative / add_attachment) has MIME-Version, Content-Type
    intended += ["mime-version", "content-type"] if msg.is_multipart() else \
        ["content-type", "content-transfer-encoding", "mime-version"]
    raw = msg.as_bytes(policy=SMTP_POLICY)
    verify(raw, outgoing, intended)
    return raw


def _cte(value: str) -> str:
    return "7bit" if value.isascii() and all(len(line) <= 900 for line in value.splitlines()) \
        else "quoted-printable"


def verify(raw: bytes, outgoing: Outgoing, intended_names: list[str]) -> None:
    parsed = BytesParser(policy=policy.compat32).parsebytes(raw)  # the checked headers: strictly (verify_message)
    verify_message(parsed, Intended(
        header_names=tuple(intended_names), subject=outgoing.subject, from_email=outgoing.sender.email,
        to=tuple(b.email for b in outgoing.to), cc=tuple(b.email for b in outgoing.cc),
        message_id=outgoing.message_id))

