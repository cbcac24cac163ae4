"""Chat and form channels (docs/channels.md) in plain Python: their types and kinds, what a
connector's chat message or form submission becomes (identity, text, attachments), and the limits
that keep a hostile connector request bounded. No IO: the handlers verify the signature and store."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from mailroom_shared.identities import IDENTITY_OF_CHANNEL_KIND, InvalidIdentity, normalise_identity

EMAIL, CHAT, FORM = "email", "chat", "form"
CONNECTOR_TYPES = (CHAT, FORM)
CHAT_KINDS = tuple(IDENTITY_OF_CHANNEL_KIND)  # whatsapp, messenger, livechat

MAX_TEXT_CHARS = 64 * 1024
MAX_ATTACHMENTS = 10
MAX_INLINE_ATTACHMENT_BYTES = 5 * 1024 * 1024
MAX_INLINE_TOTAL_BYTES = 6 * 1024 * 1024
MAX_FORM_FIELDS = 100
MAX_FORM_LABEL_CHARS = 200
MAX_FORM_VALUE_CHARS = 10_000
CHAT_SUBJECT_CHARS = 80


class InvalidConnectorRequest(ValueError):
    """The request is signed but its content cannot be stored as it is (HTTP 400, naming `field`)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def checked_type(channel_type: str, kind: str | None, webhook_url: str | None) -> tuple[str, str | None]:
    """A chat channel has a kind and a webhook URL (where replies go); a form has neither kind
    nor need of one (replies go out by email)."""
    if channel_type == CHAT:
        if kind not in CHAT_KINDS:
            raise InvalidConnectorRequest(f"kind: one of {', '.join(CHAT_KINDS)} for a chat channel", "kind")
        if not webhook_url:
            raise InvalidConnectorRequest("webhook_url: a chat channel needs the connector's URL for replies",
                                          "webhook_url")
        return CHAT, kind
    if channel_type == FORM:
        if kind is not None:
            raise InvalidConnectorRequest("kind: a form channel has no kind", "kind")
        return FORM, None
    raise InvalidConnectorRequest(f"type: one of {', '.join(CONNECTOR_TYPES)}", "type")


def identity_kind(channel_kind: str) -> str:
    """Which contact identity a chat channel's thread ids and senders are (phone, messenger, livechat)."""
    return IDENTITY_OF_CHANNEL_KIND[channel_kind]


def normalised_handle(channel_kind: str, raw: str, field: str) -> str:
    try:
        return normalise_identity(identity_kind(channel_kind), raw)
    except InvalidIdentity as exc:
        raise InvalidConnectorRequest(f"{field}: {exc}", field) from None


def message_key(channel_id: str, external_message_id: str) -> str:
    """The message's Message-ID-like key in its inbox (messages are unique per inbox by it): the
    connector's id hashed, so that any id the connector uses fits and cannot collide with email."""
    digest = hashlib.sha256(f"{channel_id}\n{external_message_id}".encode()).hexdigest()[:40]
    return f"{digest}@{channel_id}.channel.mailroom.invalid"


def chat_subject(text: str, sender_name: str | None, handle: str) -> str:
    """A chat has no subject: the conversation is named after the first words, else the sender."""
    words = " ".join((text or "").split())
    if words:
        return words if len(words) <= CHAT_SUBJECT_CHARS else words[: CHAT_SUBJECT_CHARS - 1].rstrip() + "…"
    return f"Chat with {sender_name or handle}"


def form_text(fields: dict) -> str:
    """The submitted fields as the message's text, one `label: value` per field, in order (text,
    never HTML: a value that looks like markup is shown as written)."""
    if len(fields) > MAX_FORM_FIELDS:
        raise InvalidConnectorRequest(f"fields: at most {MAX_FORM_FIELDS}", "fields")
    lines = []
    for label, value in fields.items():
        label = " ".join(str(label).split())
        if not label or len(label) > MAX_FORM_LABEL_CHARS:
            raise InvalidConnectorRequest(f"fields: a label of 1 to {MAX_FORM_LABEL_CHARS} characters", "fields")
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        elif value is None:
            value = ""
        elif isinstance(value, dict):
            raise InvalidConnectorRequest(f"fields.{label}: a string, number, boolean or list", "fields")
        value = str(value)
        if len(value) > MAX_FORM_VALUE_CHARS:
            raise InvalidConnectorRequest(f"fields.{label}: at most {MAX_FORM_VALUE_CHARS} characters", "fields")
        lines.append(f"{label}: {value}" if "\n" not in value else f"{label}:\n{value}")
    return "\n".join(lines)


@dataclass(frozen=True)
class InlineFile:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class LinkedFile:
    """An attachment the connector hosts: stored as a link, never fetched by mailroom (no SSRF,
    no unbounded download); the UI shows it as a remote file."""

    filename: str
    content_type: str
    size: int | None
    url: str


def attachments(items: list[dict]) -> list[InlineFile | LinkedFile]:
    """The request's attachments (AttachmentSchema), inline ones decoded, within the limits."""
    if len(items) > MAX_ATTACHMENTS:
        raise InvalidConnectorRequest(f"attachments: at most {MAX_ATTACHMENTS}", "attachments")
    found: list[InlineFile | LinkedFile] = []
    total = 0
    for n, item in enumerate(items):
        filename = _filename(item.get("filename"), n)
        content_type = item.get("content_type") or "application/octet-stream"
        if item.get("url") and item.get("content_base64"):
            raise InvalidConnectorRequest(f"attachments[{n}]: url or content_base64, not both", "attachments")
        if item.get("url"):
            url = item["url"].strip()
            if not url.lower().startswith(("https://", "http://")):
                raise InvalidConnectorRequest(f"attachments[{n}].url: an http(s) URL", "attachments")
            found.append(LinkedFile(filename, content_type, item.get("size"), url))
            continue
        encoded = item.get("content_base64")
        if not encoded:
            raise InvalidConnectorRequest(f"attachments[{n}]: url or content_base64", "attachments")
        if len(encoded) > (MAX_INLINE_ATTACHMENT_BYTES * 4) // 3 + 4:
            raise InvalidConnectorRequest(f"attachments[{n}]: larger than {MAX_INLINE_ATTACHMENT_BYTES} bytes",
                                          "attachments")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidConnectorRequest(f"attachments[{n}].content_base64: not base64", "attachments") from None
        total += len(data)
        if len(data) > MAX_INLINE_ATTACHMENT_BYTES or total > MAX_INLINE_TOTAL_BYTES:
            raise InvalidConnectorRequest(f"attachments: inline files up to {MAX_INLINE_ATTACHMENT_BYTES} bytes "
                                          f"each and {MAX_INLINE_TOTAL_BYTES} in all", "attachments")
        found.append(InlineFile(filename, content_type, data))
    return found


def _filename(raw: str | None, n: int) -> str:
    """A name to show and to download as: no path, no control characters."""
    name = "".join(c for c in (raw or "") if c.isprintable()).replace("/", "_").replace("\\", "_").strip()
    return name[:255] or f"attachment-{n + 1}"
