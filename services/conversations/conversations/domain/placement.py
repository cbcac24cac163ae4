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
"""

from __future__ import annotations

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
    action: str  # "join" | "reopen" | "adopt" | "new"
    conversation: ConversationRef | None = None  # for join / reopen / adopt
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
