"""Which conversation an inbound message continues (no IO).

All scoped to the message's inbox; the subject is never looked at:
  1. the reply token of a conversation (ingest extracts it from `support+<token>@…`),
  2. the In-Reply-To ids,
  3. the References ids, newest (last) first,
matched against stored messages' Message-IDs in the same inbox (inbound, and our own outbound
ones). The first key that matches wins; no match starts a conversation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MAX_LOOKUP_IDS = 100  # In-Reply-To + the newest References: bounds the lookup of a huge header


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
