"""Who may do what with an inbox (docs/access.md), as plain rules over plain values: the caller's
user id, teams and roles, and the inbox's visibility, members and teams. The service looks the
values up and answers 404/403; nothing here reads a database or an HTTP request.

An inbox is visible to `everyone` in the account, or only to `specific` users (its members) and
teams (every user whose token lists one of its teams). Those users are the inbox's *members*:
they view and act. Users with the `account_access` or `super_admin` role view every inbox's
conversations but act (reply, compose, comment, assign, close, move, forward, mark spam) only in
inboxes they are members of. Anyone else does not see the inbox at all: its conversations and
messages answer 404 exactly as a missing one would (no existence leak). Acting where one may only
view answers 403 with the reason.

Managing inboxes (create, change channels, members, access) needs `account_access` or
`super_admin`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

EVERYONE, SPECIFIC = "everyone", "specific"
VISIBILITIES = (EVERYONE, SPECIFIC)


class Caller(Protocol):
    """Who is asking (mailroom_shared.auth.Principal is one)."""

    @property
    def user_id(self) -> str: ...

    @property
    def team_ids(self) -> frozenset[str]: ...

    @property
    def account_access(self) -> bool: ...

    @property
    def super_admin(self) -> bool: ...

    @property
    def sees_every_inbox(self) -> bool: ...  # account_access or super_admin


@dataclass(frozen=True)
class InboxAccess:
    """What access to an inbox depends on."""

    visibility: str | None
    member_user_ids: frozenset[str] = frozenset()
    team_ids: frozenset[str] = frozenset()


def includes(inbox: InboxAccess, user_id: str, team_ids: Iterable[str]) -> bool:
    """The user is a member of the inbox: it is shared with everyone, lists the user, or lists
    one of the user's teams."""
    if inbox.visibility == EVERYONE:
        return True
    if user_id in inbox.member_user_ids:
        return True
    return bool(inbox.team_ids & set(team_ids))


def is_member(caller: Caller, inbox: InboxAccess) -> bool:
    return includes(inbox, caller.user_id, caller.team_ids)


def can_view(caller: Caller, inbox: InboxAccess) -> bool:
    return caller.sees_every_inbox or is_member(caller, inbox)


def can_act(caller: Caller, inbox: InboxAccess) -> bool:
    return is_member(caller, inbox)


def can_manage(caller: Caller) -> bool:
    """Create inboxes and change their channels, members and access."""
    return caller.account_access or caller.super_admin


def permissions(caller: Caller, inbox: InboxAccess) -> dict:
    return {"view": can_view(caller, inbox), "act": can_act(caller, inbox)}


def first_viewable(caller: Caller, inboxes: Sequence[InboxAccess]) -> int | None:
    """A conversation shared into several inboxes (home first): the index of the first the caller
    may view, or None. Whoever may view one of its inboxes may view the conversation."""
    return next((i for i, inbox in enumerate(inboxes) if can_view(caller, inbox)), None)


def first_actable(caller: Caller, inboxes: Sequence[InboxAccess]) -> int | None:
    """The index of the first of the conversation's inboxes the caller may act in, or None: a
    member of any of them acts on the conversation (its status and assignee are one)."""
    return next((i for i, inbox in enumerate(inboxes) if can_act(caller, inbox)), None)


def conversation_permissions(caller: Caller, inboxes: Sequence[InboxAccess]) -> dict:
    return {"view": first_viewable(caller, inboxes) is not None, "act": first_actable(caller, inboxes) is not None}


def act_refusal(inbox_name: str, action: str) -> str:
    """Why a caller who may view an inbox may not `action` in it (the 403's message)."""
    return (f"you can view the inbox {inbox_name!r} but not {action}: only its members can act "
            f"(ask an admin to add you, or one of your teams, to the inbox)")


MANAGE_REFUSAL = "managing inboxes needs the account_access or super_admin role"
