"""Who may view, act in and manage an inbox (domain/access.py): plain values in, no IO."""

from dataclasses import dataclass, field

import pytest

from conversations.domain.access import (
    EVERYONE,
    SPECIFIC,
    InboxAccess,
    act_refusal,
    can_act,
    can_manage,
    can_view,
    includes,
    permissions,
)
from mailroom_shared.auth import Principal


@dataclass(frozen=True)
class Caller:
    user_id: str
    team_ids: frozenset[str] = field(default_factory=frozenset)
    account_access: bool = False
    super_admin: bool = False

    @property
    def sees_every_inbox(self) -> bool:
        return self.account_access or self.super_admin


RESTRICTED = InboxAccess(SPECIFIC, member_user_ids=frozenset({"agent-a"}), team_ids=frozenset({"team-t"}))
SHARED = InboxAccess(EVERYONE)

MEMBER = Caller("agent-a")
TEAM_MEMBER = Caller("agent-t", team_ids=frozenset({"team-t", "team-other"}))
OUTSIDER = Caller("agent-x", team_ids=frozenset({"team-other"}))
ACCOUNT_ADMIN = Caller("acc-admin", account_access=True)
SUPER_ADMIN = Caller("root", super_admin=True)


@pytest.mark.parametrize(("caller", "inbox", "view", "act"), [
    (MEMBER, RESTRICTED, True, True),  # listed as a member
    (TEAM_MEMBER, RESTRICTED, True, True),  # one of its teams
    (OUTSIDER, RESTRICTED, False, False),  # does not even see it (404)
    (ACCOUNT_ADMIN, RESTRICTED, True, False),  # sees every inbox, acts only where a member (403)
    (SUPER_ADMIN, RESTRICTED, True, False),
    (OUTSIDER, SHARED, True, True),  # shared with everyone: everyone signed in is a member
    (ACCOUNT_ADMIN, SHARED, True, True),
])
def test_members_view_and_act_admins_view_everything_others_see_nothing(caller, inbox, view, act):
    assert can_view(caller, inbox) is view
    assert can_act(caller, inbox) is act
    assert permissions(caller, inbox) == {"view": view, "act": act}


def test_an_inbox_includes_its_members_its_teams_or_everyone():
    assert includes(RESTRICTED, "agent-a", [])
    assert includes(RESTRICTED, "someone", ["team-t"])
    assert not includes(RESTRICTED, "someone", ["team-other"])
    assert includes(SHARED, "anyone", [])
    assert not includes(InboxAccess(None), "anyone", [])  # a visibility not yet set shares with no one


def test_only_account_access_and_super_admins_manage_inboxes():
    assert can_manage(ACCOUNT_ADMIN) and can_manage(SUPER_ADMIN)
    assert not can_manage(MEMBER) and not can_manage(TEAM_MEMBER)


def test_a_verified_principal_is_a_caller():
    principal = Principal(user_id="agent-t", team_ids=frozenset({"team-t"}), roles=frozenset({"account_access"}))
    assert can_view(principal, RESTRICTED) and can_act(principal, RESTRICTED) and can_manage(principal)
    assert can_view(Principal(user_id="x", roles=frozenset({"super_admin"})), RESTRICTED)
    assert not can_act(Principal(user_id="x", roles=frozenset({"super_admin"})), RESTRICTED)


def test_the_refusal_says_why_and_what_to_do():
    message = act_refusal("Billing", "close")
    assert "'Billing'" in message and "not close" in message and "only its members can act" in message
