"""Slack rules without I/O: which events become which notification in which connection, their
text (Slack mrkdwn, user text escaped), what a message in a conversation's thread asks for, and
how long a failed post waits."""

from __future__ import annotations

import re
from dataclasses import dataclass

NOTIFICATIONS = ("new_conversations", "new_messages", "assignments", "mentions")
# the event each notification comes from
NOTIFICATION_OF_EVENT = {"conversation_created": "new_conversations", "message_added": "new_messages",
                         "conversation_assigned": "assignments", "comment_added": "mentions"}
POST_METADATA_TYPE = "mailroom_notification"  # chat.postMessage metadata: finds a post made before a crash
BACKOFF = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)  # then every hour: a post is never dropped
NOTE_PREFIX = re.compile(r"^\s*note:\s*", re.IGNORECASE)
MAX_TEXT = 3000  # characters of user text in a post (Slack's section limit)
EMAIL_ONLY = "Replying from Slack is only supported for chat conversations (WhatsApp, Messenger, live chat). " \
             "Nothing was sent. Start your message with `note:` to add an internal comment instead."


def normalise_notifications(value) -> list[str]:
    """The notifications a connection posts: some of NOTIFICATIONS (ValueError otherwise)."""
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"notifications must be a non-empty list of: {', '.join(NOTIFICATIONS)}")
    unknown = sorted({str(v) for v in value} - set(NOTIFICATIONS))
    if unknown:
        raise ValueError(f"unknown notifications: {', '.join(unknown)}; known: {', '.join(NOTIFICATIONS)}")
    return [n for n in NOTIFICATIONS if n in value]


def escape(text) -> str:
    """User text inside mrkdwn: &, < and > escaped (no links, mentions or channel pings from it)."""
    text = str(text or "")
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _who(address: dict | None, fallback: str = "someone") -> str:
    if not address:
        return fallback
    name, email = address.get("name"), address.get("email")
    if name and email:
        return f"{escape(name)} ({escape(email)})"
    return escape(name or email or fallback)


def _link(conversation_id: str, inbox_id: str | None, url_template: str | None) -> str:
    if not url_template:
        return f"conversation `{escape(conversation_id)}`"
    url = url_template.replace("{conversation_id}", conversation_id).replace("{inbox_id}", inbox_id or "")
    return f"<{url.replace('|', '%7C').replace('>', '%3E')}|open in mailroom>"


def notification(event_type: str, data: dict, url_template: str | None = None) -> str | None:
    """The text to post for an event (None: nothing to post: spam, our own replies, a comment
    mentioning nobody, an event the connections do not post)."""
    conversation_id, inbox_id = data.get("conversation_id"), data.get("inbox_id")
    if not conversation_id or data.get("spam"):
        return None
    link = _link(conversation_id, inbox_id, url_template)
    if event_type == "conversation_created":
        who = _who({"name": data.get("contact_name"), "email": data.get("contact_email")})
        return f":incoming_envelope: *New conversation* from {who}: *{escape(data.get('subject'))}* · {link}"
    if event_type == "message_added":
        if data.get("direction") != "in":
            return None
        who = _who(data.get("attributed_to") or data.get("sender"))
        return f":speech_balloon: *New message* from {who}: {escape(data.get('subject'))} · {link}"
    if event_type == "conversation_assigned":
        assignee, by = data.get("assignee_user_id"), data.get("assigned_by")
        done_by = f" by {escape(by)}" if by else ""
        if assignee is None:
            return f":bust_in_silhouette: *Unassigned*{done_by} · {link}"
        return f":bust_in_silhouette: *Assigned* to {escape(assignee)}{done_by} · {link}"
    if event_type == "comment_added":
        mentions = [m for m in data.get("mentions") or [] if m]
        if not mentions:
            return None
        quoted = "\n".join(f"> {line}" for line in escape(data.get("body")).splitlines() or [""])
        return (f":memo: {escape(data.get('author_user_id'))} mentioned {', '.join(escape(m) for m in mentions)} "
                f"in a comment · {link}\n{quoted}")
    return None


def retry_delay(attempts: int) -> float:
    return BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1]


@dataclass(frozen=True)
class ThreadMessage:
    """A person's message in a thread of the connection's channel."""

    channel: str
    user: str
    text: str
    ts: str
    thread_ts: str


def thread_message(event: dict) -> ThreadMessage | None:
    """The Events API `message` event as a person's reply in a thread; None for anything else
    (edits, deletions, bots — our own posts included —, top-level messages)."""
    if not isinstance(event, dict) or event.get("type") != "message":
        return None
    if event.get("subtype") not in (None, "thread_broadcast") or event.get("bot_id") or event.get("app_id"):
        return None
    fields = [event.get(k) for k in ("channel", "user", "text", "ts", "thread_ts")]
    if not all(isinstance(f, str) and f for f in fields):
        return None
    message = ThreadMessage(*fields)
    return None if message.thread_ts == message.ts else message


def parse_note(text: str) -> str | None:
    """The comment's text when the message starts with `note:` (case-insensitive); None otherwise."""
    match = NOTE_PREFIX.match(text or "")
    return text[match.end():].strip() if match else None


_MENTION = re.compile(r"<(?:@|#|!)[^>]*>")


def plain_text(text: str) -> str:
    """Slack's message text as plain text for the conversation: entities unescaped, Slack's own
    mention/channel markup dropped to its label."""
    def label(match: re.Match) -> str:
        inner = match.group(0)[1:-1]
        return inner.split("|", 1)[1] if "|" in inner else inner
    text = _MENTION.sub(label, text or "")
    text = re.sub(r"<(https?://[^>|]+)(?:\|[^>]*)?>", r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()
