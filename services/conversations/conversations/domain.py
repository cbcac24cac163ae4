"""Conversation rules in plain Python (no IO): how an inbound message is threaded, where it is
placed, and what a conversation shows.

Threading (all scoped to the message's inbox; the subject is never looked at):
  1. the reply token of a conversation (ingest extracts it from `support+<token>@…`),
  2. the In-Reply-To ids,
  3. the References ids, newest (last) first,
matched against stored messages' Message-IDs in the same inbox (inbound, and our own outbound
ones once outbound exists). The first key that matches wins; no match starts a conversation.

Placement of a matched message:
  * spam and non-spam never mix: a spam-flagged message never joins (or reopens) a non-spam
    conversation, and a clean message never disappears into a spam conversation; either starts
    its own conversation with its own verdict, linked to the one it matched
    (`related_conversation_id`), so nothing is hidden from agents and nothing is injected into a
    real thread by a message the filter distrusts;
  * auto-submitted mail (out-of-office, auto-replies), bounces and our own looping mail join the
    matched conversation but never reopen a closed one (and never start a linked one) — otherwise
    an auto-reply loop would keep reopening work that is done;
  * any other reply to a closed conversation reopens it (`reopen`, the default) or starts a new
    conversation linked by `reopened_from` (`new`), per CONVERSATIONS_REPLY_TO_CLOSED.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

SNIPPET_CHARS = 200
MAX_LOOKUP_IDS = 100  # In-Reply-To + the newest References: bounds the lookup of a huge header
REPLY_TOKEN_BYTES = 16  # 128 bits as lower-case hex: survives address case-folding

OPEN, CLOSED = "open", "closed"
# open / closed: by status; mine / unassigned: open ones assigned to the caller / to nobody;
# sent: with a message we sent; spam: spam only; all: open + closed. Only `spam` shows spam.
VIEWS = ("open", "closed", "mine", "unassigned", "sent", "spam", "all")


class ReplyToClosed(StrEnum):
    REOPEN = "reopen"
    NEW = "new"


@dataclass(frozen=True)
class ConversationRef:
    """What threading needs to know about a stored conversation."""

    id: str
    inbox_id: str
    status: str
    spam: bool
    reply_token: str | None = None


@dataclass(frozen=True)
class StoredMessageRef:
    """A stored message's Message-ID and the conversation it belongs to."""

    inbox_id: str
    rfc_message_id: str
    conversation: ConversationRef


@dataclass(frozen=True)
class Incoming:
    """The threading-relevant part of an inbound message."""

    inbox_id: str
    rfc_message_id: str
    subject: str = ""
    reply_token: str | None = None
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    spam: bool = False
    automatic: bool = False  # auto-submitted, bounce or loop: never reopens


@dataclass(frozen=True)
class ThreadMatch:
    conversation: ConversationRef
    matched_by: str  # "reply_token" | "in_reply_to" | "references"
    key: str


def clean_message_id(value: str | None) -> str:
    return "".join((value or "").split()).strip("<>")


def lookup_ids(incoming: Incoming) -> list[str]:
    """Every Message-ID worth looking up for `incoming`, in priority order, without duplicates."""
    ordered: list[str] = []
    for raw in (*incoming.in_reply_to, *reversed(incoming.references)):
        value = clean_message_id(raw)
        if value and value not in ordered and value != clean_message_id(incoming.rfc_message_id):
            ordered.append(value)
    return ordered[:MAX_LOOKUP_IDS]


def find_thread(incoming: Incoming, by_token: Mapping[str, ConversationRef],
                by_message_id: Mapping[str, StoredMessageRef]) -> ThreadMatch | None:
    """The conversation `incoming` continues, or None. `by_token` and `by_message_id` hold the
    candidates the caller looked up (it may pass more than the inbox's: they are ignored)."""
    token = (incoming.reply_token or "").strip().lower()
    if token:
        candidate = by_token.get(token)
        if candidate is not None and candidate.inbox_id == incoming.inbox_id:
            return ThreadMatch(candidate, "reply_token", token)
    own_id = clean_message_id(incoming.rfc_message_id)
    for field, ids in (("in_reply_to", incoming.in_reply_to), ("references", tuple(reversed(incoming.references)))):
        for raw in ids:
            key = clean_message_id(raw)
            if not key or key == own_id:
                continue
            stored = by_message_id.get(key)
            if stored is not None and stored.inbox_id == incoming.inbox_id \
                    and stored.conversation.inbox_id == incoming.inbox_id:
                return ThreadMatch(stored.conversation, field, key)
    return None


@dataclass(frozen=True)
class Placement:
    action: str  # "join" | "reopen" | "new"
    conversation: ConversationRef | None = None  # for join / reopen
    reopened_from: str | None = None  # for new: the closed conversation this continues
    related_conversation_id: str | None = None  # for new: matched, but of the other spam verdict
    reason: str = ""


def place(incoming: Incoming, match: ThreadMatch | None, reply_to_closed: ReplyToClosed) -> Placement:
    """Where a message goes once threading found `match` (see the module docstring)."""
    if match is None:
        return Placement("new", reason="no thread matched")
    conversation = match.conversation
    if conversation.spam != incoming.spam:
        return Placement("new", related_conversation_id=conversation.id,
                         reason="spam and non-spam never share a conversation")
    if conversation.status != CLOSED:
        return Placement("join", conversation, reason=f"matched by {match.matched_by}")
    if incoming.automatic:
        return Placement("join", conversation, reason="automatic mail never reopens a conversation")
    if reply_to_closed is ReplyToClosed.NEW:
        return Placement("new", reopened_from=conversation.id, reason="reply to a closed conversation")
    return Placement("reopen", conversation, reason="reply")


def new_reply_token() -> str:
    return secrets.token_hex(REPLY_TOKEN_BYTES)


def reply_address(channel_address: str, token: str) -> str:
    """`support@x` + token → `support+<token>@x` (what ingest extracts the token from)."""
    local, _, domain_part = channel_address.rpartition("@")
    return f"{local}+{token}@{domain_part}"


def snippet(text: str | None, html_fallback: str | None = None, limit: int = SNIPPET_CHARS) -> str:
    source = text if text and text.strip() else re.sub(r"<[^>]+>", " ", html_fallback or "")
    collapsed = " ".join(source.split())
    return collapsed if len(collapsed) <= limit else collapsed[: limit - 1].rstrip() + "…"


def choose_primary(channels: list[dict]) -> list[dict]:
    """Exactly one primary channel: the one marked, else the first. Raises ValueError if several."""
    marked = [c for c in channels if c.get("primary")]
    if len(marked) > 1:
        raise ValueError("only one channel can be primary")
    primary = marked[0] if marked else (channels[0] if channels else None)
    return [{**c, "primary": c is primary} for c in channels]


def inbox_digest(payload: dict) -> str:
    """Stable digest of an inbox_updated payload (order of addresses and members ignored)."""
    canonical = {**payload, "channel_addresses": sorted(payload.get("channel_addresses", [])),
                 "member_emails": sorted(payload.get("member_emails", []))}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
