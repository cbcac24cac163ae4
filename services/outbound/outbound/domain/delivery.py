"""What a delivery attempt's answer means for the email (sent, retried, failed) and when the next
attempt is due. Which inbound mail is a returned DSN, and what it says went wrong, ingest decides
(mailroom_shared.events.delivery_reports) and sends in delivery_report_received."""

from __future__ import annotations

import random
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
