"""Replies to chat conversations (docs/channels.md) in plain Python: what a reply request may hold
(text only: a chat connector takes no email fields), the exact JSON the connector receives, and
what its answer means (sent, retried with backoff, failed)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from mailroom_shared.identities import IDENTITY_OF_CHANNEL_KIND
from outbound.domain.body import html_to_text
from outbound.domain.errors import InvalidEmail

MAX_CHAT_TEXT_CHARS = 64 * 1024
EMAIL_ONLY_FIELDS = ("cc", "bcc", "subject", "attachments", "template_id", "to", "add_to", "from")


def chat_text(request: dict) -> str:
    """The reply's text: `text`, else `html` as text. Email-only fields are refused by name, not
    silently dropped."""
    for name in EMAIL_ONLY_FIELDS:
        value = request.get(name)
        if value:
            raise InvalidEmail(f"{name}: a reply to a chat conversation is text only (no {name})", name)
    if request.get("reply_all"):
        raise InvalidEmail("reply_all: a chat conversation has one recipient", "reply_all")
    text = request.get("text")
    if text is None and request.get("html"):
        text = html_to_text(request["html"])
    text = (text or "").strip()
    if not text:
        raise InvalidEmail("text: a chat reply needs text", "text")
    if len(text) > MAX_CHAT_TEXT_CHARS:
        raise InvalidEmail(f"text: at most {MAX_CHAT_TEXT_CHARS} characters", "text")
    return text


def identity(channel_kind: str, thread_id: str) -> dict:
    """The contact identity a reply goes to: the thread is the customer's phone number, PSID or session."""
    return {"kind": IDENTITY_OF_CHANNEL_KIND[channel_kind], "value": thread_id}


def payload(message_id: str, conversation_id: str, channel_id: str, channel_kind: str, thread_id: str, text: str,
            author_name: str | None, created_at: str) -> str:
    """The JSON body POSTed to the connector, the same bytes on every attempt (so is its signature
    input but for the timestamp)."""
    return json.dumps({
        "type": "message.created", "message_id": message_id, "channel_id": channel_id, "kind": channel_kind,
        "thread_id": thread_id, "conversation_id": conversation_id, "text": text,
        "author": {"name": author_name}, "created_at": created_at}, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class ChatOutcome:
    state: str  # "sent" | "retry" | "failed"
    status: int | None
    reason: str
    retry_after: float | None = None


def outcome(status: int | None, error: str | None, retry_after: float | None = None) -> ChatOutcome:
    """2xx: sent. No answer (connection refused, timeout), 408, 425, 429 and 5xx: retried with
    backoff (a 429's Retry-After honoured). A refused target (private address) and other 4xx:
    failed at once (the connector said no; retrying would not change it)."""
    if status is not None and 200 <= status < 300:
        return ChatOutcome("sent", status, f"HTTP {status}")
    if status is None:
        if (error or "").startswith("refused:"):
            return ChatOutcome("failed", None, error or "refused")
        return ChatOutcome("retry", None, error or "no answer")
    if status in (408, 425, 429) or status >= 500:
        return ChatOutcome("retry", status, error or f"HTTP {status}", retry_after)
    return ChatOutcome("failed", status, error or f"HTTP {status}")
