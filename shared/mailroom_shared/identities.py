"""Who a chat message comes from, normalised so that every service compares handles the same way
(as addresses.py does for email): WhatsApp numbers in E.164 (`phonenumbers`), Messenger page-scoped
ids (PSIDs, digits) and live-chat handles (the connector's visitor id) as opaque, trimmed strings."""

from __future__ import annotations

import re

import phonenumbers

PHONE, MESSENGER, LIVECHAT, EMAIL = "phone", "messenger", "livechat", "email"
KINDS = (PHONE, MESSENGER, LIVECHAT)
MAX_HANDLE_CHARS = 200

# which identity a chat channel's external thread id (and sender handle) is
IDENTITY_OF_CHANNEL_KIND = {"whatsapp": PHONE, "messenger": MESSENGER, "livechat": LIVECHAT}

_PSID = re.compile(r"^[0-9]{1,64}$")
_HANDLE = re.compile(r"^[\w.:@+\-]{1,200}$")


class InvalidIdentity(ValueError):
    pass


def normalise_phone(raw: str) -> str:
    """`+44 20 7946 0958` → `+442079460958`; a number without its country code is refused
    (a connector always knows it: WhatsApp ids are international)."""
    text = (raw or "").strip()
    if not text or len(text) > 64:
        raise InvalidIdentity(f"not a phone number: {raw!r}")
    if not text.startswith("+") and text.isdigit():
        text = "+" + text  # WhatsApp's wa_id is the international number without '+'
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentity(f"not a phone number in international form: {raw!r} ({exc})") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentity(f"not a valid phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_identity(kind: str, raw: str) -> str:
    """The canonical form of a handle of `kind` (phone, messenger, livechat)."""
    if kind == PHONE:
        return normalise_phone(raw)
    text = (raw or "").strip() if isinstance(raw, str) else ""
    if kind == MESSENGER:
        if not _PSID.match(text):
            raise InvalidIdentity(f"not a Messenger PSID (digits): {raw!r}")
        return text
    if kind == LIVECHAT:
        if not _HANDLE.match(text):
            raise InvalidIdentity(f"not a live-chat handle (up to {MAX_HANDLE_CHARS} letters, digits, . : @ + - _): "
                                  f"{raw!r}")
        return text
    raise InvalidIdentity(f"unknown identity kind {kind!r}")


def try_normalise_identity(kind: str, raw: str) -> str | None:
    try:
        return normalise_identity(kind, raw)
    except InvalidIdentity:
        return None


def label(kind: str, value: str) -> str:
    """How a timeline shows the identity: `whatsapp:+4915…`-style, one string."""
    return f"{kind}:{value}"
