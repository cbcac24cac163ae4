"""What a delivery attempt's answer means for the email (sent, retried, failed), when the next
attempt is due, and what a returned DSN says went wrong."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Outcome:
    status: str  # "sent" | "temporary" | "permanent"
    code: int | None = None
    response: str = ""
    queue_id: str | None = None
    refused: list[str] = field(default_factory=list)


def refusal(code: int | None, response: str) -> Outcome:
    """A relay's refusal: a 5xx is permanent, anything else (4xx, no code) is retried."""
    if code is not None and 500 <= code < 600:
        return Outcome("permanent", code, response)
    return Outcome("temporary", code, response)


class RetryPolicy(Protocol):
    retry_base_seconds: float
    retry_max_seconds: float


def backoff_seconds(attempt: int, policy: RetryPolicy) -> float:
    """base·2^(attempt−1), capped, plus 0–10 % jitter."""
    delay = min(policy.retry_base_seconds * (2 ** max(0, attempt - 1)), policy.retry_max_seconds)
    return delay * random.uniform(1.0, 1.1)


_STATUS = re.compile(r"^.*\b[45]\.\d{1,3}\.\d{1,3}\b.*$", re.MULTILINE)


def bounce_reason(data: dict) -> str:
    """The DSN's status line (`5.1.1 …`), else its first line, else its subject."""
    text = data.get("text") or ""
    match = _STATUS.search(text)
    if match:
        return " ".join(match.group(0).split())[:500]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return (first or data.get("subject") or "delivery status notification")[:500]


def is_bounce_report(message_received: dict) -> bool:
    """Whether an inbound message (ingest's message_received data) is a delivery status
    notification returning mail: the only inbound mail outbound cares about."""
    return bool((message_received.get("flags") or {}).get("bounce")) and bool(
        message_received.get("bounced_message_ids"))
