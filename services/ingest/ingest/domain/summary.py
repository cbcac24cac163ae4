"""What can be read safely from a message that could not be processed, so that a quarantined
message still reaches its inbox (sender, subject, threading headers, the spam verdict of the
upstream filter) instead of being invisible.

Only the first header block is read, capped in size, and with the compat32 policy (header values
stay strings: no grammar runs over them, so the shapes that make the full parser slow cost
nothing here). Each field is read on its own; one that cannot be read is left out.
"""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

from ingest.domain.analysis import stable_message_id
from ingest.domain.classify import spam_reasons
from ingest.domain.parsing import _parse_sender, decode_header_text, header_values, parse_date, parse_message_ids

SUMMARY_HEADER_BYTES = 64 * 1024  # more than any real header block that matters here
MAX_FIELD_CHARS = 2_000  # a header value longer than this is not worth the risk
MAX_IDS = 50


def summarise(raw: bytes, spam_score_headers: dict[str, float] | None = None) -> dict:
    """{message_id, subject, sender, date, in_reply_to, references, spam, spam_reasons}; every
    key present, values None or empty where nothing could be read safely."""
    head = raw[:SUMMARY_HEADER_BYTES]
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = head.find(separator)
        if end != -1:
            head = head[:end + len(separator)]
            break
    summary = {"message_id": None, "subject": None, "sender": None, "date": None, "in_reply_to": [],
               "references": [], "spam": False, "spam_reasons": []}
    try:
        message = BytesHeaderParser(policy=compat32).parsebytes(head)
    except Exception:
        message = None
    if message is not None:
        summary.update(_fields(message, spam_score_headers or {}))
    summary["message_id"] = summary["message_id"] or stable_message_id(raw)  # as the full analysis would
    return summary


def _short(values: list[str]) -> list[str]:
    return [value[:MAX_FIELD_CHARS] for value in values]


def _fields(message, spam_score_headers: dict[str, float]) -> dict:
    found: dict = {}
    readers = {
        "message_id": lambda: (parse_message_ids(_short(header_values(message, "Message-ID"))) or [None])[0],
        "subject": lambda: decode_header_text(_short(header_values(message, "Subject") or [""])[0]) or None,
        "sender": lambda: _sender(message),
        "date": lambda: _date(message),
        "in_reply_to": lambda: parse_message_ids(_short(header_values(message, "In-Reply-To")))[:MAX_IDS],
        "references": lambda: parse_message_ids(_short(header_values(message, "References")))[-MAX_IDS:],
        "spam_reasons": lambda: spam_reasons(message, spam_score_headers),
    }
    for key, read in readers.items():
        try:
            found[key] = read()
        except Exception:  # noqa: S112 - one unreadable field leaves the others readable
            continue
    found["spam"] = bool(found.get("spam_reasons"))
    return found


def _sender(message) -> dict | None:
    values = _short(header_values(message, "From"))
    sender = _parse_sender(values, [], None) if values else None
    if sender is None:
        return None
    return {"name": (sender.name or "")[:200] or None, "email": sender.email}


def _date(message) -> str | None:
    values = header_values(message, "Date")
    parsed = parse_date(values[0][:200]) if values else None
    return parsed.isoformat() if parsed else None
