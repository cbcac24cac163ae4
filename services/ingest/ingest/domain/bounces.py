"""Which of our messages a bounce (RFC 3464 DSN) returns, so that outbound can mark the email it
sent bounced."""

from __future__ import annotations

import logging
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser
from email.policy import compat32

from ingest.domain.parsing import parse_message_ids

log = logging.getLogger(__name__)

_RETURNED_PARTS = ("message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers")
MAX_BOUNCED_IDS = 10


def bounced_message_ids(message: Message) -> list[str]:
    """The Message-IDs of the original message a DSN returns (its message/rfc822 or
    text/rfc822-headers part)."""
    found: list[str] = []
    stack, seen = [message], 0
    while stack and seen < 200:
        part = stack.pop(0)
        seen += 1
        try:
            content_type = part.get_content_type()
            payload = part.get_payload()
        except Exception as exc:  # a broken part of a DSN: look at the others
            log.debug("skipping an unreadable part of a DSN: %s", exc)
            continue
        if content_type in _RETURNED_PARTS:
            headers = None
            if isinstance(payload, list) and payload:  # message/rfc822: the parsed copy
                headers = payload[0]
            elif isinstance(payload, str):  # text/rfc822-headers: just the header lines
                try:
                    headers = BytesHeaderParser(policy=compat32).parsebytes(
                        part.get_payload(decode=True) or payload.encode("utf-8", "replace"))
                except Exception:
                    headers = None
            if headers is not None:
                values = [str(v) for v in (headers.get_all("Message-ID") or [])]
                for value in parse_message_ids(values):
                    if value not in found:
                        found.append(value)
            continue
        if part.is_multipart() and isinstance(payload, list):
            stack.extend(payload)
    return found[:MAX_BOUNCED_IDS]


_DSN_PARTS = ("message/delivery-status", "message/global-delivery-status")
MAX_BOUNCED_RECIPIENTS = 50
_FIELD_CHARS = 500


def _address_field(value) -> str | None:
    """`rfc822; ada@example.com` (RFC 3464 address-type; addr) → `ada@example.com`."""
    text = " ".join(str(value or "").split())
    kind, separator, address = text.partition(";")
    address = (address if separator else kind).strip().strip("<>").strip()
    if not address or "@" not in address or len(address) > 320 or any(ch in address for ch in " ,;<>\x00"):
        return None
    return address


def _header_blocks(text: str) -> list:
    blocks = [b for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    return [HeaderParser(policy=compat32).parsestr(b) for b in blocks]


def _per_recipient_blocks(part: Message) -> list:
    payload = part.get_payload()
    if isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0].get_payload(), str):
        # message/global-delivery-status: parsed as one message (the per-message fields as its
        # headers) whose body holds the per-recipient blocks, in UTF-8
        body = payload[0].get_payload(decode=True) or b""
        return _header_blocks(body.decode("utf-8", "replace"))
    if isinstance(payload, list):  # message/delivery-status: the parser split it into header blocks
        return [block for block in payload[1:] if isinstance(block, Message)]
    if isinstance(payload, str):  # kept as text: split it into blocks ourselves
        return _header_blocks(payload)[1:]
    return []


def bounced_recipients(message: Message) -> list[dict]:
    """Each recipient a DSN reports on (RFC 3464 per-recipient fields of its message/delivery-status
    part): `{email, action, status, diagnostic}`. The Original-Recipient (the address we sent to)
    is preferred to the Final-Recipient (where an alias led). Outbound decides what is a hard
    bounce (action `failed`, status 5.x.x); `delayed` or `delivered` reports are listed too."""
    found: list[dict] = []
    stack, seen = [message], 0
    while stack and seen < 200 and len(found) < MAX_BOUNCED_RECIPIENTS:
        part = stack.pop(0)
        seen += 1
        try:
            content_type = part.get_content_type()
            if content_type in _DSN_PARTS:
                for block in _per_recipient_blocks(part):
                    email = _address_field(block.get("Original-Recipient")) or _address_field(
                        block.get("Final-Recipient"))
                    if email is None:
                        continue
                    found.append({
                        "email": email,
                        "action": " ".join(str(block.get("Action") or "").split()).lower()[:40],
                        "status": " ".join(str(block.get("Status") or "").split())[:40],
                        "diagnostic": " ".join(str(block.get("Diagnostic-Code") or "").split())[:_FIELD_CHARS]
                        or None})
                continue
            payload = part.get_payload()
        except Exception as exc:  # a broken part of a DSN: look at the others
            log.debug("skipping an unreadable part of a DSN: %s", exc)
            continue
        if part.is_multipart() and isinstance(payload, list) and content_type not in _RETURNED_PARTS:
            stack.extend(payload)
    return found[:MAX_BOUNCED_RECIPIENTS]
