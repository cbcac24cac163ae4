"""Where automatic replies to a message may go (RFC 3834 §4): its Return-Path — the SMTP envelope
sender when the message reached our SMTP listener, else the Return-Path header the delivering
MTA wrote (IMAP, providers' HTTP webhooks). A null path (`<>`: bounces and other automatic mail)
or a malformed one gives None: nothing automatic is sent."""

from __future__ import annotations

from email.message import Message

MAX_CHARS = 320


def return_path(envelope_from: str | None, message: Message) -> str | None:
    if envelope_from is not None:
        return _address(envelope_from)
    try:
        values = message.get_all("Return-Path") or []
    except Exception:  # a header the policy cannot even hold: treat as absent
        return None
    return _address(str(values[0])) if len(values) == 1 else None  # several: which one is unknowable


def _address(value: str) -> str | None:
    text = value.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if (not text or len(text) > MAX_CHARS or text.count("@") != 1 or text.startswith("@") or text.endswith("@")
            or any(ch.isspace() or ch in '<>,;"()\\\x00' for ch in text)):
        return None
    return text
