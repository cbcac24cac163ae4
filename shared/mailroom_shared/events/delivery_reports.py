"""Which inbound messages are delivery reports (bounces, DSNs) and what `delivery_report_received`
says about one: pure functions of a `message_received` event's data.

ingest publishes `delivery_report_received` beside `message_received` for a bounce, so outbound
(which matches bounces to the emails it sent) subscribes to a few hundred bytes per bounce instead
of every inbound message with its text and HTML. They live here, with the contract, because the
producer decides with them and a consumer reading an older `message_received` (a replayed one)
must decide the same way.
"""

from __future__ import annotations

import re

REASON_LIMIT = 500
# an enhanced status code (RFC 3463) on a line of the DSN's human-readable part: `5.1.1`, `4.4.7`
_STATUS_LINE = re.compile(r"^.*\b[45]\.\d{1,3}\.\d{1,3}\b.*$", re.MULTILINE)


def is_delivery_report(message_received: dict) -> bool:
    """A message ingest classified as a bounce that names at least one returned message (a
    Message-ID to match a sent email against): nothing else concerns outbound."""
    return bool((message_received.get("flags") or {}).get("bounce")) and bool(
        message_received.get("bounced_message_ids"))


def delivery_report_reason(message_received: dict) -> str:
    """What went wrong, in a line: the DSN's first status line (`… 5.1.1 …`), else its first line,
    else its subject."""
    text = message_received.get("text") or ""
    match = _STATUS_LINE.search(text)
    if match:
        return " ".join(match.group(0).split())[:REASON_LIMIT]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return (first or message_received.get("subject") or "delivery status notification")[:REASON_LIMIT]


def delivery_report(message_received: dict) -> dict:
    """The data of `delivery_report_received` for a message that is_delivery_report."""
    return {
        "intake_id": message_received["intake_id"],
        "raw_url": message_received["raw_url"],
        "reason": delivery_report_reason(message_received),
        "bounced_message_ids": list(message_received.get("bounced_message_ids") or []),
        "bounced_recipients": [dict(r) for r in message_received.get("bounced_recipients") or []],
    }
