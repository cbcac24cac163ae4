"""Quarantined mail in the inbox: a message ingest stored but could not process is shown as a
placeholder (not displayable: the reason and the link to the raw message) instead of being
invisible to the team (no IO)."""

from __future__ import annotations

PLACEHOLDER_SUBJECT = "(message could not be displayed)"
PLACEHOLDER_ID_DOMAIN = "quarantined.mailroom.invalid"


def notice(reason: str | None) -> str:
    """What the team reads instead of the message (and the conversation list's snippet)."""
    return (f"This message could not be processed and is not displayed ({reason or 'no reason recorded'}). "
            "The original is kept: open the raw message.")


def is_placeholder(flags: dict | None) -> bool:
    return bool((flags or {}).get("quarantined"))


def placeholder_message(quarantined: dict) -> dict:
    """message_received data for ingest's message_quarantined data: what its headers said where
    they could be read, placeholders elsewhere; no body, no attachments."""
    sender = quarantined.get("sender")
    return {
        "intake_id": quarantined["intake_id"], "channel_address": quarantined["channel_address"],
        "via": quarantined["via"],
        "message_id": quarantined.get("message_id") or f"{quarantined['intake_id']}@{PLACEHOLDER_ID_DOMAIN}",
        "subject": quarantined.get("subject") or PLACEHOLDER_SUBJECT, "date": quarantined.get("date"),
        "sender": sender, "attributed_to": sender or {"name": None, "email": None},
        "reply_to": [], "to": [], "cc": [],
        "in_reply_to": list(quarantined.get("in_reply_to") or []),
        "references": list(quarantined.get("references") or []), "reply_token": quarantined.get("reply_token"),
        "text": notice(quarantined.get("reason")), "html": None, "html_truncated": False, "remote_images_blocked": 0,
        "size": quarantined.get("size"), "raw_url": quarantined.get("raw_url"), "attachments": [],
        "flags": {"auto_submitted": False, "bounce": False, "spam": bool(quarantined.get("spam")), "loop": False,
                  "reasons": [], "quarantined": True, "quarantine_reason": quarantined.get("reason")},
        "forward": None, "received_at": quarantined.get("received_at"),
    }
