"""Who may do what. Every HTTP endpoint authenticates the caller (`mailroom_shared.auth`:
bearer JWT). Whether the caller may send from an inbox (only its members act; account-wide
admins only view) is decided by conversations, which owns inboxes: outbound passes the caller's
principal along with its RPC for the inbox or conversation context and gets "not found" or
"forbidden" back (services/conversations/conversations/outbound_api.py).
"""

from __future__ import annotations

from mailroom_shared.auth import Principal, authenticate


def caller(request) -> Principal:
    """The verified caller (401 without a valid token)."""
    return authenticate(request)
