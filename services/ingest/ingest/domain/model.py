"""Value objects of ingest's domain: what a parsed and analysed message is.

Plain Python, no IO and no framework imports: the parser, the classifier, the forward
detector, the `mailroom explain` command and the nameko service all share these.
"""

from __future__ import annotations

import email.message
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Address:
    """A mailbox as written in a header or a forward block.

    `email` is None when only a display name is known (e.g. Exchange's `From: John Doe`):
    we never invent an address.
    """

    name: str | None
    email: str | None

    def as_dict(self) -> dict:
        return {"name": self.name, "email": self.email}


@dataclass
class Attachment:
    filename: str
    content_type: str
    size: int
    sha256: str
    disposition: str  # "attachment" | "inline"
    content_id: str | None = None  # without angle brackets
    payload: bytes = field(default=b"", repr=False)  # never put into events


@dataclass
class ParseLimits:
    max_depth: int = 20  # nesting of multipart / message/rfc822
    max_parts: int = 500
    max_seconds: float = 10.0  # the parser worker is killed at this deadline (and checked in-process)
    max_text_chars: int = 2_000_000
    # screened before the stdlib parser, whose header parsing is quadratic in some shapes (a
    # Content-Type with 50,000 parameters took 29 s: CPython bpo-42909)
    max_header_bytes: int = 1024 * 1024  # the message's header block
    max_header_params: int = 1000  # `;` in one header field
    # `;` in all Content-* fields of the message together: 60 parts whose Content-Type and
    # -Disposition each carry 990 took 7 s (compat32's get_param is quadratic in them too)
    max_message_params: int = 5000


@dataclass
class ParsedMessage:
    """The result of parsing one raw RFC 5322 message."""

    message: email.message.EmailMessage = field(repr=False)  # the stdlib tree, for header look-ups
    message_id: str | None  # without angle brackets; None if missing or unusable
    subject: str
    sender: Address | None  # From (first mailbox); None if absent or unparseable
    reply_to: list[Address]
    to: list[Address]
    cc: list[Address]
    date: datetime | None  # timezone-aware when the header had a zone
    in_reply_to: list[str]  # message ids without angle brackets
    references: list[str]
    text: str | None  # the text/plain body (decoded), if any
    html: str | None  # the text/html body (decoded, NOT sanitised), if any
    attachments: list[Attachment]
    embedded_messages: list[email.message.EmailMessage] = field(default_factory=list, repr=False)
    defects: list[str] = field(default_factory=list)  # human readable: bad charset, truncated, ...


@dataclass(frozen=True)
class ForwardInfo:
    """What the forward detector found.

    `original_sender` is the sender of the forwarded message (its email may be None when only
    a name was written); `detected_by` names the signal, e.g. "rfc822_attachment",
    "resent_headers", "text_block:gmail", "html_block:outlook", "text_block:structural",
    "server_forward:gmail", "server_forward:exchange", "server_relay:x_original_sender"
    (docs/forwarding.md).
    """

    original_sender: Address
    original_subject: str | None
    original_date: str | None  # as written in the forward block (localised text kept)
    detected_by: str
    # How it was decided, for `mailroom explain` (not in events): one step per block or header looked at,
    # outermost first, each {"rule": ..., "sender": ..., "detail": ...}; the last one decided.
    steps: tuple[dict, ...] = field(default=(), compare=False, hash=False)

    def as_dict(self) -> dict:
        return {
            "original_sender": self.original_sender.as_dict(),
            "original_subject": self.original_subject,
            "original_date": self.original_date,
            "detected_by": self.detected_by,
        }


@dataclass(frozen=True)
class Classification:
    auto_submitted: bool = False  # RFC 3834 / Precedence / X-Autoreply family / List-*
    bounce: bool = False  # DSN, message/delivery-status
    spam: bool = False
    loop: bool = False  # our own mail coming back
    reasons: tuple[str, ...] = ()  # e.g. ("auto_submitted:auto-replied", "spam:X-Spam-Flag")
