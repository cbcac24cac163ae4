"""Who may do what: every HTTP endpoint calls `authorize` exactly once, with the action and the
inbox concerned, before it reads or changes anything of that inbox.

Authentication arrives in a later issue (DESIGN.md, security rules: bearer tokens; only inbox
members act, account-wide admins view). Until then every request is allowed; the rules go here.
"""

from __future__ import annotations

VIEW_INBOXES = "inboxes.view"
MANAGE_INBOXES = "inboxes.manage"
VIEW_CONVERSATIONS = "conversations.view"
ACT_ON_CONVERSATIONS = "conversations.act"  # reply, comment, assign, close, move


def authorize(request, action: str, inbox_id: str | None = None) -> None:
    """Raise mailroom_shared.http.Unauthorized / Forbidden when the caller may not do `action`."""
    return None
