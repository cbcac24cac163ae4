"""Whether a new conversation's first message gets the inbox's automatic acknowledgement, in plain
Python (RFC 3834): only to the message's Return-Path (the envelope sender), never to automatic
mail (Auto-Submitted, Precedence bulk/list/junk, X-Auto-Response-Suppress, list mail, a null
Return-Path …: ingest's `auto_submitted` flag), bounces, spam, loops or our own inboxes, and at
most once per sender per period."""

from __future__ import annotations

import datetime as dt
import re

from outbound.domain import suppression

MAX_PERIOD_HOURS = 24 * 365
_AUTOMATED_LOCAL = re.compile(r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|bounces?)([+-].*)?$", re.I)


def refusal(message: dict | None, own_addresses: set[str]) -> str | None:
    """Why the message is not acknowledged, or None: acknowledge it (to `target(message)`)."""
    if not message or message.get("direction") != "in":
        return "not a message we received"
    flags = message.get("flags") or {}
    if flags.get("bounce"):
        return "a bounce"
    if flags.get("auto_submitted"):
        reasons = [r for r in flags.get("reasons") or [] if str(r).startswith("auto_submitted")]
        return f"automatic mail ({', '.join(reasons) or 'auto_submitted'})"
    if flags.get("spam"):
        return "spam"
    if flags.get("loop"):
        return "a mail loop"
    address = target(message)
    if address is None:
        return "no usable Return-Path (envelope sender)"
    if address in own_addresses:
        return "our own address"
    sender = suppression.normalised_or_none((message.get("sender") or {}).get("email"))
    if sender in own_addresses:
        return "sent by one of our inboxes"
    if _AUTOMATED_LOCAL.match(address.rpartition("@")[0]):
        return "an automated sender"
    return None


def target(message: dict) -> str | None:
    """The Return-Path ingest recorded (normalised), or None."""
    return suppression.normalised_or_none((message.get("flags") or {}).get("return_path"))


def recently_acknowledged(last_sent_at: dt.datetime | None, now: dt.datetime, period_hours: int) -> bool:
    return last_sent_at is not None and now - last_sent_at < dt.timedelta(hours=period_hours)
