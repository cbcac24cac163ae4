"""An email prepared from a compose, reply or forward request, ready to be built and queued, and
the rules that read the request's recipients and body into it (each refusal an InvalidEmail
naming the field)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from outbound.domain.attachments import check_cids
from outbound.domain.body import Body, InvalidBody, compose_body, parse_inserts
from outbound.domain.errors import InvalidEmail, invalid
from outbound.domain.headers import Mailbox, mailboxes
from outbound.domain.mime import AttachedMessage, Part
from outbound.domain.recipients import final_recipients


class RecipientLimit(Protocol):
    max_recipients: int


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
    body: Body
    in_reply_to: str | None
    references: list[str]
    thread_topic: str
    thread_index: str
    automatic: bool | str  # a str: the Auto-Submitted value (mime.Outgoing)
    parts: list[Part] = field(default_factory=list)
    attached_messages: list[AttachedMessage] = field(default_factory=list)


def recipients(request: dict, name: str, limit: RecipientLimit) -> list[Mailbox] | None:
    """The request's `to`/`cc`/`bcc`/`add_to`, each address checked; None when not given."""
    if request.get(name) is None:
        return None
    try:
        return mailboxes(name, request[name], limit=limit.max_recipients)
    except ValueError as exc:
        raise invalid(exc) from exc


def body_of(request: dict, rendered: dict, *, quoted_html: str | None = None,
            quoted_text: str | None = None) -> Body:
    """The body: the request's html/text, else the template's, then inserts and a quoted part."""
    html = request.get("html") if request.get("html") is not None else rendered.get("html")
    text = request.get("text") if request.get("text") is not None else rendered.get("text")
    try:
        inserts = parse_inserts(request.get("inserts"))
        return compose_body(html=html, text=text, inserts=inserts, quoted_html=quoted_html,
                            quoted_text=quoted_text)
    except InvalidBody as exc:
        raise InvalidEmail(str(exc), "body") from exc


def finish(prepared: Prepared, limit: RecipientLimit) -> Prepared:
    """Each address once (To before CC before BCC), at least one To, the recipient limit, and
    every `cid:` of the HTML attached inline."""
    to, cc, bcc = final_recipients(prepared.to, prepared.cc, prepared.bcc)
    if not to:
        raise InvalidEmail("to: at least one recipient is required", "to")
    if len(to) + len(cc) + len(bcc) > limit.max_recipients:
        raise InvalidEmail(f"at most {limit.max_recipients} recipients in all", "to")
    prepared.to, prepared.cc, prepared.bcc = to, cc, bcc
    check_cids(prepared.body, prepared.parts)
    return prepared
