"""The owner-scope rules of templates and snippets (outbound/domain/scopes.py), pure: who sees,
who manages, what a new or changed item's owner is."""

from dataclasses import dataclass

import pytest

from outbound.domain import scopes
from outbound.domain.errors import InvalidEmail
from outbound.domain.scopes import ACCOUNT, INBOX, PERSONAL, Hidden, Owner, Refused


@dataclass(frozen=True)
class Caller:
    user_id: str
    super_admin: bool = False


class Rights:
    """inbox-1: viewed by `viewers`, acted in by `members`."""

    def __init__(self, viewers=(), members=()):
        self.viewers, self.members = set(viewers) | set(members), set(members)

    def may_view(self, inbox_id):
        return inbox_id == "inbox-1" and self.user in self.viewers

    def may_act(self, inbox_id):
        return inbox_id == "inbox-1" and self.user in self.members

    def of(self, caller):
        self.user = caller.user_id
        return self


ADMIN, MEMBER, VIEWER, STRANGER = Caller("admin", True), Caller("member"), Caller("viewer"), Caller("stranger")
RIGHTS = Rights(viewers={"viewer", "admin"}, members={"member"})
IN_INBOX = Owner(INBOX, "inbox-1", None)
EVERYWHERE = Owner(ACCOUNT, None, None)
MEMBERS_OWN = Owner(PERSONAL, None, "member")


@pytest.mark.parametrize(("owner", "caller", "seen"), [
    (EVERYWHERE, STRANGER, True), (EVERYWHERE, MEMBER, True),
    (IN_INBOX, MEMBER, True), (IN_INBOX, VIEWER, True), (IN_INBOX, ADMIN, True), (IN_INBOX, STRANGER, False),
    (MEMBERS_OWN, MEMBER, True), (MEMBERS_OWN, ADMIN, False), (MEMBERS_OWN, STRANGER, False),
    (Owner(INBOX, None, None), ADMIN, False),  # an inbox's without an inbox: no one's
])
def test_who_sees_an_item(owner, caller, seen):
    assert scopes.may_see(owner, caller, RIGHTS.of(caller)) is seen
    if not seen:
        with pytest.raises(Hidden, match="no template t1"):
            scopes.require_visible(owner, caller, RIGHTS.of(caller), "template", "t1")


@pytest.mark.parametrize(("owner", "caller", "outcome"), [
    (EVERYWHERE, ADMIN, None), (EVERYWHERE, MEMBER, Refused), (EVERYWHERE, VIEWER, Refused),
    (IN_INBOX, MEMBER, None), (IN_INBOX, VIEWER, Refused), (IN_INBOX, ADMIN, Refused), (IN_INBOX, STRANGER, Hidden),
    (MEMBERS_OWN, MEMBER, None), (MEMBERS_OWN, ADMIN, Hidden), (MEMBERS_OWN, STRANGER, Hidden),
])
def test_who_manages_an_item(owner, caller, outcome):
    if outcome is None:
        scopes.require_manage(owner, caller, RIGHTS.of(caller), "template", "t1")
    else:
        with pytest.raises(outcome):
            scopes.require_manage(owner, caller, RIGHTS.of(caller), "template", "t1")


def test_refusals_say_why_and_hidden_ones_say_nothing_more_than_a_missing_id():
    with pytest.raises(Refused, match="super admins"):
        scopes.require_manage(EVERYWHERE, MEMBER, RIGHTS.of(MEMBER), "snippet", "s1")
    with pytest.raises(Refused, match="managed by its members"):
        scopes.require_manage(IN_INBOX, VIEWER, RIGHTS.of(VIEWER), "snippet", "s1")
    with pytest.raises(Hidden) as hidden:
        scopes.require_manage(MEMBERS_OWN, ADMIN, RIGHTS.of(ADMIN), "snippet", "s1")
    assert str(hidden.value) == "no snippet s1"
    with pytest.raises(Hidden, match="no inbox inbox-1"):  # creating in an inbox one may not see
        scopes.require_manage(IN_INBOX, STRANGER, RIGHTS.of(STRANGER), "snippet", None)


def test_the_owner_of_a_new_item():
    assert scopes.new_owner({"inbox_id": None}, MEMBER) == EVERYWHERE
    assert scopes.new_owner({"inbox_id": "inbox-1"}, MEMBER) == IN_INBOX  # naming an inbox: the inbox's
    assert scopes.new_owner({"scope": "account", "inbox_id": "inbox-1"}, ADMIN) == Owner(ACCOUNT, "inbox-1", None)
    assert scopes.new_owner({"scope": "personal"}, MEMBER) == MEMBERS_OWN
    with pytest.raises(InvalidEmail) as error:
        scopes.new_owner({"scope": "inbox"}, MEMBER)
    assert error.value.field == "inbox_id"
    with pytest.raises(InvalidEmail):
        scopes.new_owner({"scope": "team"}, MEMBER)


def test_the_owner_of_a_changed_item():
    # nothing about the scope given: it stays, with its owner (an admin editing it does not take it)
    assert scopes.new_owner({"text": "x"}, ADMIN, MEMBERS_OWN) == MEMBERS_OWN
    assert scopes.new_owner({"scope": "personal"}, MEMBER, MEMBERS_OWN) == MEMBERS_OWN
    # made personal: the caller's; shared with an inbox: no owner any more
    assert scopes.new_owner({"scope": "personal"}, MEMBER, IN_INBOX) == Owner(PERSONAL, "inbox-1", "member")
    assert scopes.new_owner({"scope": "inbox", "inbox_id": "inbox-1"}, MEMBER, MEMBERS_OWN) == IN_INBOX
    assert scopes.new_owner({"inbox_id": "inbox-2"}, MEMBER, IN_INBOX) == Owner(INBOX, "inbox-2", None)
    with pytest.raises(InvalidEmail):
        scopes.new_owner({"inbox_id": None}, MEMBER, IN_INBOX)


def test_inboxes_to_ask_and_shortcut_namespaces():
    assert scopes.inboxes_to_ask([EVERYWHERE, IN_INBOX, MEMBERS_OWN, Owner(ACCOUNT, "inbox-9", None)]) == {"inbox-1"}
    assert {scopes.owner_key(o) for o in (EVERYWHERE, Owner(ACCOUNT, "inbox-1", None))} == {"account"}
    assert scopes.owner_key(IN_INBOX) == "inbox:inbox-1"
    assert scopes.owner_key(MEMBERS_OWN) == "user:member"
