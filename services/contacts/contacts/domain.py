"""Contact rules in plain Python: who gets a contact, and what a timeline entry shows."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailroom_shared.addresses import try_normalise_email

SNIPPET_CHARS = 200

# Senders that are machines, not people: no contact unless configured (bounces, notifications).
_AUTOMATED_LOCAL_PARTS = re.compile(
    r"^(mailer-daemon|postmaster|no[-_.]?reply|do[-_.]?not[-_.]?reply|bounces?|notifications?)([+-].*)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ContactDecision:
    email: str | None  # normalised; None = no contact for this message
    name: str | None
    reason: str  # why (for logs and tests)
    held_back: bool = False  # spam: the contact is created if a teammate marks it not-spam


def is_automated_sender(email: str) -> bool:
    return bool(_AUTOMATED_LOCAL_PARTS.match(email.split("@", 1)[0]))


def decide_contact(attributed_to: dict | None, *, own_addresses: set[str], spam: bool, loop: bool,
                   create_for_automated: bool) -> ContactDecision:
    """Which contact an inbound message belongs to.

    Spam holds the contact back (created later if a teammate marks it not-spam); our own
    addresses never become contacts; mailer-daemon/no-reply senders only when configured.
    """
    if spam:
        return ContactDecision(None, None, "spam: contact held back", held_back=True)
    if loop:
        return ContactDecision(None, None, "our own mail looping back")
    email = try_normalise_email((attributed_to or {}).get("email"))
    name = ((attributed_to or {}).get("name") or "").strip() or None
    if email is None:
        return ContactDecision(None, name, "no usable sender address")
    if email in own_addresses:
        return ContactDecision(None, name, "an inbox's own address")
    if is_automated_sender(email) and not create_for_automated:
        return ContactDecision(None, name, "automated sender")
    return ContactDecision(email, name, "sender")


def snippet(text: str | None, html_fallback: str | None = None, limit: int = SNIPPET_CHARS) -> str:
    source = text if text and text.strip() else _strip_tags(html_fallback or "")
    collapsed = " ".join(source.split())
    return collapsed if len(collapsed) <= limit else collapsed[: limit - 1].rstrip() + "…"


def _strip_tags(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)
