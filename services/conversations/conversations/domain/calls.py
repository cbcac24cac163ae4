"""Calls logged on a conversation (issue #17, docs/calls.md), the rules without IO: the number in
E.164 (`phonenumbers`; a number without its country code needs a default region), a recording
link that is https and carries no credentials, a call time not in the future, and the `tel:` link
of a number."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import urllib.parse

import phonenumbers

DIRECTIONS = ("inbound", "outbound")
OUTCOMES = ("answered", "no_answer", "busy", "voicemail", "failed")
MAX_DURATION_SECONDS = 86_400
MAX_NOTES_CHARS = 10_000
MAX_RECORDING_URL_CHARS = 2048
MAX_PHONE_CHARS = 64
MAX_IDEMPOTENCY_KEY_CHARS = 200
# a client's clock may run a little ahead of ours; a call further in the future is a mistake
FUTURE_SKEW = dt.timedelta(minutes=5)


class InvalidCall(ValueError):
    """A call field that cannot be stored; `field` names it (the 422's details)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _printable(text: str) -> bool:
    return all(ch.isprintable() or ch in "\t" for ch in text)


def is_region(code: str) -> bool:
    """A region code phonenumbers knows (`DE`, `GB`, `US`…): CONVERSATIONS_DEFAULT_PHONE_REGION."""
    return code in phonenumbers.SUPPORTED_REGIONS


def normalise_phone_number(raw: str, default_region: str | None) -> str:
    """`+49 30 1234567`, `(030) 1234567` with region DE, `tel:+1-202-555-0143` → E.164. Without a
    default region a number must carry its country code (`+…`)."""
    text = (raw or "").strip() if isinstance(raw, str) else ""
    if not text or len(text) > MAX_PHONE_CHARS or not _printable(text):
        raise InvalidCall("phone_number", f"not a phone number: {raw!r} (1 to {MAX_PHONE_CHARS} characters)")
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            if default_region is None and "+" not in text:
                raise InvalidCall("phone_number", f"{text!r} has no country code: write it in international form "
                                  "(+ and the country code, e.g. +49 30 1234567); no default region is configured "
                                  "(CONVERSATIONS_DEFAULT_PHONE_REGION)") from None
            raise InvalidCall("phone_number", f"{text!r}: unknown country code") from None
        raise InvalidCall("phone_number", f"not a phone number: {text!r}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidCall("phone_number", f"not a valid phone number: {text!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def tel_url(e164: str | None) -> str | None:
    """`+4930…` → `tel:+4930…` (RFC 3966; E.164 needs no escaping)."""
    return f"tel:{e164}" if e164 else None


def check_recording_url(url: str | None) -> str | None:
    """An https URL without user or password, ≤ 2048 characters; None/blank: none."""
    if url is None or not url.strip():
        return None
    url = url.strip()
    if len(url) > MAX_RECORDING_URL_CHARS or not url.isprintable() or any(ch.isspace() for ch in url):
        raise InvalidCall("recording_url", f"not a URL of at most {MAX_RECORDING_URL_CHARS} characters "
                          "without spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - a bad port raises
    except ValueError:
        raise InvalidCall("recording_url", "not a valid URL") from None
    if parts.scheme.lower() != "https":
        raise InvalidCall("recording_url", "the recording URL must be https://")
    if not parts.hostname:
        raise InvalidCall("recording_url", "the recording URL has no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidCall("recording_url", "the recording URL must not carry a user name or password")
    return url


def check_notes(notes: str | None) -> str | None:
    """Plain text, ≤ 10,000 characters; no NUL (a database cannot store it); blank: none."""
    if notes is None or not notes.strip():
        return None
    if len(notes) > MAX_NOTES_CHARS:
        raise InvalidCall("notes", f"notes: at most {MAX_NOTES_CHARS} characters")
    if "\x00" in notes:
        raise InvalidCall("notes", "notes must not contain NUL characters")
    return notes


def check_called_at(called_at: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """When the call was made (default: now); a time beyond FUTURE_SKEW from now is refused."""
    if called_at is None:
        return now
    if called_at.tzinfo is None:
        called_at = called_at.replace(tzinfo=dt.UTC)
    if called_at > now + FUTURE_SKEW:
        raise InvalidCall("called_at", "called_at is in the future")
    return called_at.astimezone(dt.UTC)


def check_idempotency_key(key: str | None) -> str | None:
    if key is None or key == "":
        return None
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS or not key.isprintable():
        raise InvalidCall("Idempotency-Key", f"Idempotency-Key: at most {MAX_IDEMPOTENCY_KEY_CHARS} printable "
                          "characters")
    return key


def request_digest(conversation_id: str, call: dict) -> str:
    """The request a key was first used with (the same key with another request is a conflict,
    never a second call). `call` as the client sent it, validated (called_at absent stays absent)."""
    canonical = json.dumps({"conversation_id": conversation_id, "call": call}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
