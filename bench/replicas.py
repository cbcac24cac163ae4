"""`bench/run.py --replicas N`: the pure parts — counting that every email was stored exactly once,
and CPU per email by service when a service runs as several processes (`ingest`, `ingest-2`, …).

No third-party imports: tests/test_bench_replicas.py loads this file on its own.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

_REPLICA_SUFFIX = re.compile(r"-(\d+)$")


def clean_id(value: str | None) -> str:
    """A Message-ID as the corpus writes it: no angle brackets, no spaces, lower case."""
    return (value or "").strip().strip("<>").strip().lower()


def service_of(process: str) -> str:
    """`ingest-2` → `ingest`; `ingest` → `ingest` (Stack.replica_names)."""
    return _REPLICA_SUFFIX.sub("", process)


def exactly_once(accepted: Iterable[str], stored: Iterable[str], added_events: Mapping[str, Iterable[str]],
                 deliveries: int, timeline: Iterable[str] | None = None) -> dict:
    """Was every accepted email stored once, as chaos/checks.py counts it?

    `accepted`: Message-IDs the SMTP listeners answered 250 for; `stored`: the Message-ID of every
    inbound row of conversations' messages table (one item per row: a Message-ID twice is a
    message stored twice); `added_events`: Message-ID → the CloudEvents ids of the message_added
    events the subscriber received for it (two ids: one message announced twice — a duplicate
    effect); `deliveries`: message_added deliveries in all (the same id again is a redelivery, which
    consumers de-duplicate: counted, not a duplicate); `timeline`: the Message-ID of every inbound
    timeline entry in contacts.
    """
    accepted_ids = {clean_id(m) for m in accepted}
    rows = Counter(clean_id(m) for m in stored)
    events = {clean_id(m): set(ids) for m, ids in added_events.items()}
    distinct_events = sum(len(ids) for ids in events.values())
    result = {
        "accepted": len(accepted_ids),
        "stored_once": sum(1 for m in accepted_ids if rows.get(m) == 1),
        "missing": sorted(m for m in accepted_ids if not rows.get(m)),
        "duplicated": sum(c - 1 for c in rows.values() if c > 1),  # extra rows, as chaos counts them
        "duplicated_ids": sorted(m for m, c in rows.items() if c > 1),
        "stored_not_accepted": sorted(set(rows) - accepted_ids),
        "message_added_deliveries": deliveries,
        "message_added_events": distinct_events,
        "message_added_duplicated": sum(len(ids) - 1 for ids in events.values() if len(ids) > 1),
        "message_added_missing": sum(1 for m in accepted_ids if not events.get(m)),
        "message_added_redelivered": deliveries - distinct_events,
    }
    if timeline is not None:
        entries = Counter(clean_id(m) for m in timeline)
        result["timeline_duplicated"] = sum(c - 1 for c in entries.values() if c > 1)
        result["timeline_missing"] = sum(1 for m in accepted_ids if not entries.get(m))
    # exactly once: every accepted email one row and one message_added event, nothing extra
    result["ok"] = not (result["missing"] or result["duplicated"] or result["stored_not_accepted"]
                        or result["message_added_duplicated"] or result["message_added_missing"]
                        or result.get("timeline_duplicated"))
    for key in ("missing", "duplicated_ids", "stored_not_accepted"):  # a sample is enough in the report
        result[f"{key}_count"] = len(result[key])
        result[key] = result[key][:20]
    return result


def cpu_by_service(cpu_ms_per_email: Mapping[str, float], services: Iterable[str]) -> dict[str, dict]:
    """{service: {"total": the sum over its processes, "per_process": {process: ms per email}}} for
    each of `services` (process names as Stack.replica_names gives them; `smtp`, `smtp-2` too)."""
    wanted = set(services)
    table: dict[str, dict] = {}
    for process, value in cpu_ms_per_email.items():
        service = service_of(process)
        if service not in wanted or value is None:
            continue
        row = table.setdefault(service, {"total": 0.0, "per_process": {}})
        row["per_process"][process] = value
        row["total"] = round(row["total"] + value, 2)
    return {service: table[service] for service in services if service in table}


def ratio(new: float | None, old: float | None, digits: int = 3) -> float | None:
    return round(new / old, digits) if new and old else None
