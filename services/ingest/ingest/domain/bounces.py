"""Which of our messages a bounce (RFC 3464 DSN) returns, so that outbound can mark the email it
sent bounced."""

from __future__ import annotations

import logging
from email.message import Message
from email.parser import BytesHeaderParser
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
