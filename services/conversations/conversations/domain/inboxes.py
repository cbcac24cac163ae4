"""An inbox's channels and members as written by an admin or the inboxes file, its key, and the
digest of what it announces (no IO)."""

from __future__ import annotations

import hashlib
import json
import re

from conversations.domain.access import VISIBILITIES
from mailroom_shared.addresses import InvalidAddress, normalise_email


class InvalidInbox(ValueError):
    """An inbox as written can never be stored (HTTP 400; a bad inboxes file stops the start)."""


def choose_primary(channels: list[dict]) -> list[dict]:
    """Exactly one primary channel: the one marked, else the first. Raises ValueError if several."""
    marked = [c for c in channels if c.get("primary")]
    if len(marked) > 1:
        raise ValueError("only one channel can be primary")
    primary = marked[0] if marked else (channels[0] if channels else None)
    return [{**c, "primary": c is primary} for c in channels]


def normalised_channels(channels: list[dict]) -> list[dict]:
    """The channels with normalised addresses and exactly one primary; InvalidInbox otherwise."""
    try:
        result = choose_primary([{**c, "address": normalise_email(c["address"])} for c in channels])
    except (InvalidAddress, ValueError) as exc:
        raise InvalidInbox(str(exc)) from exc
    addresses = [c["address"] for c in result]
    if len(set(addresses)) != len(addresses):
        raise InvalidInbox("a channel address is listed twice")
    return result


def normalised_members(members: list[dict]) -> list[dict]:
    try:
        result = [{"user_id": m["user_id"], "email": normalise_email(m["email"])} for m in members]
    except InvalidAddress as exc:
        raise InvalidInbox(str(exc)) from exc
    if len({m["user_id"] for m in result}) != len(result):
        raise InvalidInbox("a member user_id is listed twice")
    return result


def checked_visibility(visibility: str) -> str:
    if visibility not in VISIBILITIES:
        raise InvalidInbox(f"visibility must be one of {', '.join(VISIBILITIES)}")
    return visibility


def inbox_key(name: str) -> str:
    """The key of a configured inbox that names none: its name slugified."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:100] or "inbox"


def inbox_digest(payload: dict) -> str:
    """Stable digest of an inbox_updated payload (order of addresses and members ignored)."""
    canonical = {**payload, "channel_addresses": sorted(payload.get("channel_addresses", [])),
                 "member_emails": sorted(payload.get("member_emails", []))}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
