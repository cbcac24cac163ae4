"""Where a threaded inbound message goes (no IO).

  * only participants join: a message whose sender is not a participant of the conversation it
    refers to (by reply token, In-Reply-To or References — domain/participants.py) neither joins
    nor reopens it; it starts its own conversation, linked to that one (`related_conversation_id`);
  * spam and non-spam never mix: a spam-flagged message never joins (or reopens) a non-spam
    conversation, and a clean message never disappears into a spam conversation; either starts
    its own conversation with its own verdict, linked to the one it matched
    (`related_conversation_id`), so nothing is hidden from agents and nothing is injected into a
    real thread by a message the filter distrusts;
  * auto-submitted mail (out-of-office, auto-replies), bounces and our own looping mail of a
    participant join the matched conversation but never reopen a closed one (and never start a
    linked one) — otherwise an auto-reply loop would keep reopening work that is done (an
    automatic flag is no pass: from a non-participant it starts a linked conversation too);
  * any other reply to a closed conversation reopens it (`reopen`, the default) or starts a new
    conversation linked by `reopened_from` (`new`), per CONVERSATIONS_REPLY_TO_CLOSED;
  * a late parent (`adopt`): a message that would start a conversation, but whose own Message-ID
    the first message of an existing conversation of the inbox refers to (the reply was processed
    first, e.g. under concurrent SMTP), joins that conversation — when the two would have ended up
    together had they arrived in order: the reply's sender is a participant of the parent (its
    From/To/Cc, its contact's addresses, a member, its contact's company domain), and both have
    the same spam verdict. It never reopens: it is older than what is there.
  * a copy (`share`, `is_copy`): the same email already stored for another of our inboxes (it was
    sent to both) is not stored again; the inbox it reached is added to that conversation's inboxes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from conversations.domain.conversation import CLOSED
from conversations.domain.participants import Participants, participation
from conversations.domain.threads import ConversationRef, Incoming, ThreadMatch


class ReplyToClosed(StrEnum):
    REOPEN = "reopen"
    NEW = "new"


@dataclass(frozen=True)
class Placement:
    action: str  # "join" | "reopen" | "adopt" | "new" | "share"
    conversation: ConversationRef | None = None  # for join / reopen / adopt / share
    reopened_from: str | None = None  # for new: the closed conversation this continues
    # for new: the conversation it referred to but may not join (not a participant, or the other
    # spam verdict), or the one that referred to it but may not adopt it
    related_conversation_id: str | None = None
    reason: str = ""


NOT_A_PARTICIPANT = "the sender is not a participant of the conversation it refers to"


def place(incoming: Incoming, match: ThreadMatch | None, reply_to_closed: ReplyToClosed,
          participant: bool = True) -> Placement:
    """Where a message goes once threading found `match`; `participant`: whether its sender is a
    participant of the matched conversation (see the module docstring)."""
    if match is None:
        return Placement("new", reason="no thread matched")
    conversation = match.conversation
    if not participant:
        return Placement("new", related_conversation_id=conversation.id, reason=NOT_A_PARTICIPANT)
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


@dataclass(frozen=True)
class AwaitingConversation:
    """A conversation whose first message referred to a Message-ID not stored when it arrived."""

    conversation: ConversationRef
    starter_identities: frozenset[str]  # who wrote that first message (sender, attributed sender)


def adopt(incoming: Incoming, awaiting: Sequence[AwaitingConversation],
          own_participants: Participants) -> Placement | None:
    """A late parent's place: the first of the conversations `awaiting` it (oldest first) that it
    may join, or None. `own_participants`: the participants a conversation started by `incoming`
    would have (its addresses, its contact's, the members); the reply that started an awaiting
    conversation must count among them, as it would have had the parent arrived first."""
    for candidate in awaiting:
        if candidate.conversation.inbox_id != incoming.inbox_id or candidate.conversation.spam != incoming.spam:
            continue
        why = participation(candidate.starter_identities, own_participants)
        if why is not None:
            return Placement("adopt", candidate.conversation,
                             reason=f"late parent of the conversation's first message ({why})")
    return None


# --- one email to several team inboxes (docs/architecture.md) -----------------------------------

SHARE_WINDOW = dt.timedelta(days=7)  # copies of one email further apart are separate conversations


@dataclass(frozen=True)
class Copy:
    """One delivery of an email to one inbox: what decides whether two are the same email."""

    rfc_message_id: str
    sender: str | None  # normalised From address
    subject: str
    text: str
    recipients: frozenset[str]  # its To and Cc, normalised, without +tags
    inbox_addresses: frozenset[str]  # the channel addresses of the inbox it reached (without +tags)
    received_at: dt.datetime
    spam: bool


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def is_copy(incoming: Copy, stored: Copy, window: dt.timedelta = SHARE_WINDOW) -> bool:
    """Whether `incoming` (for one inbox) is the email `stored` (first received for another):
    the same Message-ID and sender, the same subject and text, received within `window`, the same
    spam verdict, and each names the other's inbox among its recipients — the stored copy, which a
    later sender cannot change, must name the new inbox. A spoofed Message-ID from another sender
    (or with other content, or sent to an inbox the original did not name) is no copy."""
    return (bool(incoming.rfc_message_id) and incoming.rfc_message_id == stored.rfc_message_id
            and incoming.sender is not None and incoming.sender == stored.sender
            and incoming.spam == stored.spam
            and abs(incoming.received_at - stored.received_at) <= window
            and incoming.subject.strip() == stored.subject.strip() and _same_text(incoming.text, stored.text)
            and bool(stored.recipients & incoming.inbox_addresses)
            and bool(incoming.recipients & stored.inbox_addresses))


def untagged(address: str | None) -> str | None:
    """support+token@example.com → support@example.com (already normalised input)."""
    if not address or "@" not in address:
        return address
    local, _, domain = address.rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"
