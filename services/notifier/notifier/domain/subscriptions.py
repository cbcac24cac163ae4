"""What a webhook subscription receives: the events it names (or every one, `*`), optionally only
those of some inboxes."""

from __future__ import annotations

# the public events the notifier consumes and forwards to webhooks (source service, event name)
FORWARDED: tuple[tuple[str, str], ...] = (
    ("conversations", "conversation_created"),
    ("conversations", "message_added"),
    ("conversations", "conversation_assigned"),
    ("conversations", "conversation_closed"),
    ("conversations", "conversation_reopened"),
    ("conversations", "comment_added"),
    ("conversations", "conversation_moved"),
    ("contacts", "contact_created"),
    ("outbound", "email_sent"),
    ("outbound", "email_failed"),
    ("outbound", "email_bounced"),
)
EVENT_NAMES: tuple[str, ...] = tuple(name for _source, name in FORWARDED)
ALL = "*"


def normalise_events(events) -> list[str]:
    """The event list of a subscription, checked: names from EVENT_NAMES or `*` alone. ValueError
    naming what is unknown."""
    if not isinstance(events, list | tuple) or not events:
        raise ValueError("events must be a non-empty list of event names (or [\"*\"])")
    names = sorted({str(e) for e in events})
    if ALL in names:
        return [ALL]
    unknown = [n for n in names if n not in EVENT_NAMES]
    if unknown:
        raise ValueError(f"unknown event types: {', '.join(unknown)}; known: {', '.join(EVENT_NAMES)}")
    return names


def wants(events: list[str], inbox_ids: list[str] | None, event_type: str, inbox_id: str | None) -> bool:
    """Whether a subscription receives an event of `event_type` about `inbox_id` (None: the event
    names no inbox; an inbox filter then lets it through only when it has no inbox at all)."""
    if ALL not in events and event_type not in events:
        return False
    if inbox_ids:
        return inbox_id is not None and inbox_id in inbox_ids
    return True
