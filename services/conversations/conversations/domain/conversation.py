"""What a conversation is: its statuses, the views that list it, and its reply token (no IO)."""

from __future__ import annotations

import secrets

OPEN, CLOSED = "open", "closed"
# open / closed: by status; mine / unassigned: open ones assigned to the caller / to nobody;
# sent: with a message we sent; spam: spam only; all: open + closed. Only `spam` shows spam.
VIEWS = ("open", "closed", "mine", "unassigned", "sent", "spam", "all")

REPLY_TOKEN_BYTES = 16  # 128 bits as lower-case hex: survives address case-folding


def new_reply_token() -> str:
    return secrets.token_hex(REPLY_TOKEN_BYTES)
