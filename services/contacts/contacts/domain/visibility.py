"""Whose inbox mail a caller may see on a timeline (docs/access.md): an inbox visible to
everyone, or one the caller is a member of by user or by team. Account-wide admins see every
inbox (the caller's `sees_every_inbox`, decided before this rule is asked)."""

from __future__ import annotations

from collections.abc import Collection, Set

EVERYONE = "everyone"


def may_see_inbox(visibility: str, member_user_ids: Collection[str] | None, team_ids: Collection[str] | None,
                  *, user_id: str, caller_team_ids: Set[str]) -> bool:
    return (visibility == EVERYONE or user_id in (member_user_ids or [])
            or bool(caller_team_ids & set(team_ids or [])))
