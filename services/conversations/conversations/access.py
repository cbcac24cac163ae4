"""Who may do what (docs/access.md). Every HTTP endpoint authenticates the caller once
(`mailroom_shared.auth`) and asks this module before it reads or changes anything of an inbox.

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

from conversations.models import Inbox
from mailroom_shared.auth import Principal
from mailroom_shared.http import Forbidden, NotFound

EVERYONE, SPECIFIC = "everyone", "specific"
VISIBILITIES = (EVERYONE, SPECIFIC)


def is_member(principal: Principal, inbox: Inbox) -> bool:
    if inbox.visibility == EVERYONE:
        return True
    if any(m.user_id == principal.user_id for m in inbox.members):
        return True
    return bool(principal.team_ids & {t.team_id for t in inbox.teams})


def can_view(principal: Principal, inbox: Inbox) -> bool:
    return principal.sees_every_inbox or is_member(principal, inbox)


def can_act(principal: Principal, inbox: Inbox) -> bool:
    return is_member(principal, inbox)


def permissions(principal: Principal, inbox: Inbox) -> dict:
    return {"view": can_view(principal, inbox), "act": can_act(principal, inbox)}


def require_view(principal: Principal, inbox: Inbox | None, not_found: str) -> Inbox:
    """The inbox if the principal may view it; else 404 with `not_found` (the same answer as for
    something that does not exist)."""
    if inbox is None or not can_view(principal, inbox):
        raise NotFound(not_found)
    return inbox


def require_act(principal: Principal, inbox: Inbox | None, not_found: str, action: str) -> Inbox:
    """404 when the principal may not even view the inbox, 403 when it may only view."""
    require_view(principal, inbox, not_found)
    if not can_act(principal, inbox):
        raise Forbidden(
            f"you can view the inbox {inbox.name!r} but not {action}: only its members can act "
            f"(ask an admin to add you, or one of your teams, to the inbox)",
            {"inbox_id": inbox.id, "action": action})
    return inbox


def require_manage(principal: Principal) -> None:
    if not (principal.account_access or principal.super_admin):
        raise Forbidden("managing inboxes needs the account_access or super_admin role")


def viewable_filter(principal: Principal):
    """SQL condition on Inbox: the inboxes the principal may view (None = every inbox)."""
    if principal.sees_every_inbox:
        return None
    return member_filter(principal)


def member_filter(principal: Principal):
    """SQL condition on Inbox: the inboxes the principal is a member of."""
    from sqlalchemy import exists, or_, select

    from conversations.models import InboxTeam, Member

    conditions = [Inbox.visibility == EVERYONE,
                  exists(select(Member.id).where(Member.inbox_id == Inbox.id,
                                                 Member.user_id == principal.user_id))]
    if principal.team_ids:
        conditions.append(exists(select(InboxTeam.team_id).where(
            InboxTeam.inbox_id == Inbox.id, InboxTeam.team_id.in_(sorted(principal.team_ids)))))
    return or_(*conditions)
