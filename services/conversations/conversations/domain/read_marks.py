"""Unread state, per user (no IO; queries.py holds the SQL of the same rule).

Each user has at most one read mark per conversation: how far they have read it. A conversation
is *unread* for a user when

- they marked it unread (`POST /api/conversations/{id}/unread`), or
- it has an inbound message (a customer's email, chat message or form submission) newer than
  their mark, or they have no mark and it has an inbound message at all.

Our own emails and replies, comments, assignments and other acts never make it unread: only
what came in. Marking read (`POST …/read`) records the newest inbound message there is at that
moment as the mark ("read up to here"), so a message that arrives just after is unread even if
the clocks of ingest and this service disagree: "newer" compares the times this service stored
the messages at (`messages.created_at`), not the times mail servers claim.

The state is the user's own: anyone who may view the conversation (its inbox's members, and the
admins who view every inbox) marks it for themselves, and nobody else's state changes. It is not
an act on the conversation and announces no event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Mark:
    """A user's read mark on one conversation."""

    read_up_to: dt.datetime | None  # the newest inbound message's stored time when marked read
    marked_unread: bool = False


def is_unread(mark: Mark | None, inbound_stored_at: Iterable[dt.datetime]) -> bool:
    """The rule, over the stored times of the conversation's inbound messages."""
    if mark is not None and mark.marked_unread:
        return True
    times = list(inbound_stored_at)
    if mark is None or mark.read_up_to is None:
        return bool(times)
    return any(t > mark.read_up_to for t in times)


def marked_read(inbound_stored_at: Iterable[dt.datetime]) -> Mark:
    """The mark after "read": up to the newest inbound message there is."""
    return Mark(read_up_to=max(inbound_stored_at, default=None), marked_unread=False)


def marked_unread() -> Mark:
    """The mark after "unread": unread until read again, whatever arrives."""
    return Mark(read_up_to=None, marked_unread=True)
