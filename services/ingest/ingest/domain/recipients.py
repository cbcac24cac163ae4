"""Which inbox channel a recipient address means, and the reply token it may carry.

Replies we send carry `Reply-To: support+<token>@team.example`; the token finds the conversation
even when a mail client drops In-Reply-To/References.
"""

from __future__ import annotations

import re

from mailroom_shared.addresses import try_normalise_email

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{6,64}$")


def split_recipient(address: str, channels: set[str]) -> tuple[str, str | None] | None:
    """`Support+Tok123@Team.example` → ("support@team.example", "Tok123") when that channel exists;
    None for an address that is not one of ours (SMTP answers 550 for it)."""
    normalised = try_normalise_email(address)
    if normalised is None:
        return None
    if normalised in channels:
        return normalised, None
    local, _, domain = normalised.partition("@")
    base, plus, token = local.partition("+")
    if plus and f"{base}@{domain}" in channels:
        # keep the token's original case: it is matched exactly
        original_local = (address.strip().strip("<>").rpartition("@")[0])
        original_token = original_local.partition("+")[2]
        return f"{base}@{domain}", original_token if _TOKEN.match(original_token) else None
    return None
