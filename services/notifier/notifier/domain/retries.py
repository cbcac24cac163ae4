"""When a failed webhook delivery is tried again, and which answers are worth trying again."""

from __future__ import annotations

import random
import re

# delays before retry 1, 2, ...: the first after ~5 s, then growing over about a day
DEFAULT_SCHEDULE: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
JITTER = 0.2  # +-20 %: receivers coming back are not hit by every retry at the same second
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")


def parse_schedule(items) -> tuple[float, ...]:
    """`["5s", "5m", "2h"]` -> (5.0, 300.0, 7200.0); a bare number is seconds. ValueError on
    anything else or an empty schedule."""
    delays = []
    for item in items:
        match = _DELAY.match(str(item).strip().lower())
        if not match:
            raise ValueError(f"{item!r} is not a delay such as 5s, 5m, 2h")
        delays.append(float(match.group(1)) * _UNITS[match.group(2) or "s"])
    if not delays:
        raise ValueError("the schedule is empty")
    return tuple(delays)


def retry_delay(attempts_made: int, schedule: tuple[float, ...], rng: random.Random | None = None) -> float | None:
    """Seconds to wait after `attempts_made` failed attempts (1 = the first one failed), with
    jitter; None when the schedule is used up (the delivery has failed)."""
    if attempts_made < 1 or attempts_made > len(schedule):
        return None
    base = schedule[attempts_made - 1]
    return base * (1 + (rng or random).uniform(-JITTER, JITTER))


def is_retryable(status: int | None) -> bool:
    """Retry on no answer (timeout, connection error: status None), 429 and 5xx; 2xx is success
    and other answers (4xx: the receiver refuses it, 410 Gone included; 1xx/3xx) fail at once."""
    return status is None or status == 429 or status >= 500


def is_success(status: int | None) -> bool:
    return status is not None and 200 <= status < 300
