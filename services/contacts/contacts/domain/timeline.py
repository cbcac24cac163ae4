"""What a timeline entry shows, and whom an email we sent is logged for."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from contacts.domain.senders import display_name
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.text import SNIPPET_CHARS, snippet

ATTACHMENT_FIELDS = ("filename", "content_type", "size", "sha256", "url")
_WORD = re.compile(r"\S+")  # what str.split() splits on, for every code point


def entry_snippet(text: str | None, html: str | None) -> str:
    """`mailroom_shared.text.snippet(text, html)`, the same string, reading only as many words of
    the text as it shows: folding the white space of a whole 100 KB text cost ~9 ms per message."""
    if not (text and text.strip()):
        return snippet(text, html)
    words, length = [], -1
    for word in _WORD.finditer(text):
        words.append(word.group())
        length += len(words[-1]) + 1
        if length > SNIPPET_CHARS:  # enough to know it is cut, and where
            break
    return snippet(" ".join(words))


def timeline_attachments(attachments: Iterable[dict] | None) -> list[dict]:
    """The attachment fields a timeline entry keeps (no content, no disposition)."""
    return [{k: a.get(k) for k in ATTACHMENT_FIELDS} for a in attachments or []]


def outbound_link_id(email_id: str) -> str:
    """The timeline's link to the conversation (message_conversations) for an email we sent."""
    return f"outbound:{email_id}"


def stored_message_of(direction: str, intake_id: str | None) -> str | None:
    """The ingest message an entry's attachment links point to (an inbound message's intake id),
    or None: an email we sent links to outbound, which checks the caller itself."""
    return intake_id if direction == "in" and intake_id else None


def sender_of(email: dict) -> str | None:
    """The normalised From address of an email we sent (the inbox it was sent from)."""
    return try_normalise_email((email.get("from_") or {}).get("email"))


def sent_to(email: dict, sender: str | None,
            own_addresses: set[str] | frozenset[str]) -> Iterator[tuple[str, str | None]]:
    """(normalised address, name) of every recipient of an email we sent (To, CC, then BCC) who
    gets it on their timeline: once each, never the sender and never one of our own inboxes (a
    forward to another team's inbox)."""
    seen = set()
    for recipient in [*(email.get("to") or []), *(email.get("cc") or []), *(email.get("bcc") or [])]:
        address = try_normalise_email(recipient.get("email"))
        if address is None or address in own_addresses or address in seen or address == sender:
            continue
        seen.add(address)
        yield address, display_name(recipient.get("name"))


# --- calls logged in conversations (docs/calls.md) ----------------------------------------------

CALL = "call"  # a timeline entry's kind (the others are "message": email, chat, form)
CALL_FIELDS = ("call_id", "direction", "phone_number", "outcome", "duration_seconds", "notes", "recording_url",
               "logged_by", "called_at")
_OUTCOME_WORDS = {"answered": "answered", "no_answer": "no answer", "busy": "busy", "voicemail": "voicemail",
                  "failed": "failed"}


def call_entry_direction(direction: str) -> str:
    """The timeline's direction of a call: the contact called us ("in") or we called them ("out")."""
    return "in" if direction == "inbound" else "out"


def call_key(call_id: str) -> str:
    """The entry's message key (unique per contact and direction: a redelivery adds nothing)."""
    return f"{call_id}@call.mailroom.invalid"


def call_link_id(call_id: str) -> str:
    """The timeline's link to the conversation (message_conversations) for a call."""
    return f"call:{call_id}"


def call_subject(direction: str, outcome: str, duration_seconds: int) -> str:
    """`Outbound call · answered · 3 min 05 s` (what the timeline shows as the entry's subject)."""
    words = ["Inbound call" if direction == "inbound" else "Outbound call", _OUTCOME_WORDS.get(outcome, outcome)]
    if duration_seconds:
        minutes, seconds = divmod(int(duration_seconds), 60)
        words.append(f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s")
    return " · ".join(words)


def call_details(data: dict) -> dict:
    """The call's fields the timeline entry keeps (call_logged's)."""
    return {field: data.get(field) for field in CALL_FIELDS}
