"""Who an email is from: one of the inbox's channel addresses (never any other address), and the
Reply-To that brings answers back to the conversation (`<channel>+<reply token>@…`)."""

from __future__ import annotations

from mailroom_shared.text import reply_address
from outbound.domain.errors import InvalidEmail, invalid
from outbound.domain.headers import HeaderInjection, InvalidRecipient, Mailbox, mailbox


def identities(inbox: dict) -> dict[str, Mailbox]:
    """The inbox's From addresses (as conversations gives them), by address."""
    return {i["email"]: Mailbox(email=i["email"], name=i.get("name")) for i in inbox.get("identities") or []}


def choose_sender(inbox: dict, requested, default_email: str | None) -> Mailbox:
    """From: the requested channel address of the inbox, else `default_email` (the address the
    conversation came in on), else the inbox's primary address."""
    own = identities(inbox)
    if not own:
        raise InvalidEmail("the inbox has no channel address to send from", "from")
    if requested:
        try:
            wanted = mailbox("from", requested)
        except (InvalidRecipient, HeaderInjection) as exc:  # a malformed From is the request's fault: 400
            raise invalid(exc) from exc
        if wanted.email not in own:
            raise InvalidEmail(f"from: {wanted.email} is not an address of this inbox "
                               f"(one of: {', '.join(sorted(own))})", "from")
        chosen = own[wanted.email]
        if isinstance(requested, dict) and requested.get("name"):
            chosen = Mailbox(chosen.email, wanted.name)
        return chosen
    if default_email and default_email in own:
        return own[default_email]
    primary = inbox.get("primary_address")
    return own.get(primary) or next(iter(own.values()))


def conversation_reply_address(sender: Mailbox, token: str | None) -> str | None:
    """Where answers to this email thread back, or None when the conversation has no token yet."""
    return reply_address(sender.email, token) if token else None


def reply_to(sender: Mailbox, token: str | None, *, enabled: bool) -> list[Mailbox]:
    """Reply-To: the sender's reply address (OUTBOUND_REPLY_TO_TOKEN), else none."""
    if not enabled or not token:
        return []
    return [Mailbox(email=reply_address(sender.email, token), name=sender.name)]
