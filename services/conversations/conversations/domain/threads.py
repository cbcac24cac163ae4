"""Which conversation an inbound message continues (no IO).

All scoped to the message's inbox; the subject is never looked at:
  1. the reply token of a conversation (ingest extracts it from `support+<token>@…`),
  2. the In-Reply-To ids,
  3. the References ids, newest (last) first,
matched against stored messages' Message-IDs in the same inbox (inbound, and our own outbound
ones). `find_threads` lists every conversation matched, in that order; the first one whose
participants include the sender is joined (domain/participants.py, domain/placement.py). No match
starts a conversation — or lets a late parent join the conversation its reply already started
(`awaited_ids`, placement.adopt).

Reply tokens are 128 random bits (conversation.new_reply_token) and unique to one conversation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from conversations.domain.participants import message_identities

MAX_LOOKUP_IDS = 100  # In-Reply-To + the newest References: bounds the lookup of a huge header
MAX_AWAITED_IDS = 10  # the ids a new conversation's first message referred to and that a late parent may have


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
    sender: str | None = None  # normalised address of From
    attributed_to: str | None = None  # normalised: the original sender of a trusted forward, else the sender

    @property
    def identities(self) -> frozenset[str]:
        return message_identities(self.sender, self.attributed_to)


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


def find_threads(incoming: Incoming, by_token: Mapping[str, ConversationRef],
                 by_message_id: Mapping[str, StoredMessageRef]) -> list[ThreadMatch]:
    """Every conversation `incoming` refers to, in priority order (token, In-Reply-To, References
    newest first), each once. `by_token` and `by_message_id` hold the candidates the caller looked
    up (it may pass more than the inbox's: they are ignored)."""
    matches: list[ThreadMatch] = []
    seen: set[str] = set()

    def add(conversation: ConversationRef, field: str, key: str) -> None:
        if conversation.id not in seen:
            seen.add(conversation.id)
            matches.append(ThreadMatch(conversation, field, key))

    token = (incoming.reply_token or "").strip().lower()
    if token:
        candidate = by_token.get(token)
        if candidate is not None and candidate.inbox_id == incoming.inbox_id:
            add(candidate, "reply_token", token)
    own_id = clean_message_id(incoming.rfc_message_id)
    for field, ids in (("in_reply_to", incoming.in_reply_to), ("references", tuple(reversed(incoming.references)))):
        for raw in ids:
            key = clean_message_id(raw)
            if not key or key == own_id:
                continue
            stored = by_message_id.get(key)
            if stored is not None and stored.inbox_id == incoming.inbox_id \
                    and stored.conversation.inbox_id == incoming.inbox_id:
                add(stored.conversation, field, key)
    return matches


def find_thread(incoming: Incoming, by_token: Mapping[str, ConversationRef],
                by_message_id: Mapping[str, StoredMessageRef]) -> ThreadMatch | None:
    """The conversation `incoming` refers to first (see find_threads), or None."""
    matches = find_threads(incoming, by_token, by_message_id)
    return matches[0] if matches else None


def awaited_ids(incoming: Incoming, stored_ids: set[str] | frozenset[str]) -> list[str]:
    """The Message-IDs `incoming` refers to that are not stored (`stored_ids`: those that are):
    when it starts a conversation, a parent still in flight may arrive later with one of them and
    join it (placement.adopt). In-Reply-To first, then References newest first; bounded."""
    return [key for key in lookup_ids(incoming) if key not in stored_ids][:MAX_AWAITED_IDS]
