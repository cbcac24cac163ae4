"""Who may see and who may manage a template or snippet: its owner scope (docs/access.md).

* `account` — the whole account's: every signed-in user sees and uses it; only super admins
  (the `super_admin` role) create, change or delete it. Existing templates and snippets are
  account-wide. Its `inbox_id`, if any, only says in which inbox's composer it is offered.
* `inbox` — one inbox's (`inbox_id`): seen and used by whoever may view that inbox (its members,
  and account-wide admins), managed by its members (those who may act in it).
* `personal` — one user's (`owner_user_id`): seen, used and managed by that user only.

What cannot be seen is answered as if it did not exist (404, no existence leak); what can be seen
but not managed is a 403 with the reason. Whether a caller may view or act in an inbox is decided
by conversations (it owns inboxes): the rules here ask an `InboxRights`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from outbound.domain.errors import InvalidEmail

ACCOUNT, INBOX, PERSONAL = "account", "inbox", "personal"
SCOPES = (ACCOUNT, INBOX, PERSONAL)


class Caller(Protocol):
    """The signed-in user (mailroom_shared.auth.Principal fits)."""

    @property
    def user_id(self) -> str: ...

    @property
    def super_admin(self) -> bool: ...


class InboxRights(Protocol):
    """What the caller may do in an inbox (conversations' rule: view = member or account-wide
    admin; act = member)."""

    def may_view(self, inbox_id: str) -> bool: ...

    def may_act(self, inbox_id: str) -> bool: ...


class Hidden(LookupError):
    """The caller may not see it: answered exactly as for an id that does not exist (404)."""


class Refused(PermissionError):
    """The caller sees it but may not manage it (403): the message says why."""


@dataclass(frozen=True)
class Owner:
    scope: str
    inbox_id: str | None  # inbox: the owning inbox; otherwise where it is offered (or None: everywhere)
    owner_user_id: str | None  # personal: its owner

    @classmethod
    def of(cls, item) -> Owner:
        """The owner of a saved template or snippet (anything with these three attributes)."""
        return cls(item.scope, item.inbox_id, item.owner_user_id)


def default_scope(inbox_id: str | None) -> str:
    """A new template without a `scope`: the inbox's when it names one, else the account's."""
    return INBOX if inbox_id else ACCOUNT


def new_owner(values: dict, caller: Caller, current: Owner | None = None) -> Owner:
    """The owner of an item being created (`current` None) or changed with `values` (`scope`,
    `inbox_id`; those not given stay). A personal item belongs to the caller who makes it
    personal; it keeps its owner while it stays personal."""
    inbox_id = values.get("inbox_id", current.inbox_id if current else None)
    scope = values.get("scope") or (current.scope if current else default_scope(inbox_id))
    if scope not in SCOPES:
        raise InvalidEmail(f"scope: one of {', '.join(SCOPES)}", "scope")
    if scope == INBOX and not inbox_id:
        raise InvalidEmail("inbox_id: an inbox's template or snippet names its inbox", "inbox_id")
    if scope != PERSONAL:
        return Owner(scope, inbox_id, None)
    keeps = current is not None and current.scope == PERSONAL
    return Owner(PERSONAL, inbox_id, current.owner_user_id if keeps else caller.user_id)


def inboxes_to_ask(owners: Iterable[Owner]) -> set[str]:
    """The inboxes whose rights decide whether these items can be seen."""
    return {o.inbox_id for o in owners if o.scope == INBOX and o.inbox_id}


def may_see(owner: Owner, caller: Caller, inboxes: InboxRights) -> bool:
    if owner.scope == ACCOUNT:
        return True
    if owner.scope == INBOX:
        return bool(owner.inbox_id) and inboxes.may_view(owner.inbox_id)
    return owner.owner_user_id == caller.user_id


def require_visible(owner: Owner, caller: Caller, inboxes: InboxRights, what: str, item_id: str) -> None:
    """Read, list, render or use in an email: Hidden unless the caller may see it."""
    if not may_see(owner, caller, inboxes):
        raise Hidden(f"no {what} {item_id}")


def require_manage(owner: Owner, caller: Caller, inboxes: InboxRights, what: str, item_id: str | None) -> None:
    """Create (into `owner`), change or delete: Hidden when the caller may not even see it (or,
    creating, may not see the inbox named), Refused when it sees it but may not manage it."""
    if owner.scope == ACCOUNT:
        if not caller.super_admin:
            raise Refused(f"account-wide {what}s are managed by super admins (the super_admin role); "
                          f"make it yours (scope personal) or your inbox's (scope inbox)")
        return
    if owner.scope == INBOX:
        if owner.inbox_id and inboxes.may_act(owner.inbox_id):
            return
        if owner.inbox_id and inboxes.may_view(owner.inbox_id):
            raise Refused(f"an inbox's {what}s are managed by its members: you can view the inbox but not act in it")
        raise Hidden(f"no {what} {item_id}" if item_id else f"no inbox {owner.inbox_id}")
    if owner.owner_user_id != caller.user_id:
        raise Hidden(f"no {what} {item_id}")


def owner_key(owner: Owner) -> str:
    """Whose namespace a snippet's shortcut is unique in: the account's, an inbox's or a user's
    (two users may both have a personal `thx`)."""
    if owner.scope == INBOX:
        return f"inbox:{owner.inbox_id}"
    if owner.scope == PERSONAL:
        return f"user:{owner.owner_user_id}"
    return ACCOUNT
