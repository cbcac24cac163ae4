"""Where a threaded inbound message goes (no IO).

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

from dataclasses import dataclass
from enum import StrEnum

from conversations.domain.conversation import CLOSED
from conversations.domain.threads import ConversationRef, Incoming, ThreadMatch


class ReplyToClosed(StrEnum):
    REOPEN = "reopen"
    NEW = "new"


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
