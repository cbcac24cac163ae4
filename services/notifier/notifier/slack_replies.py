"""A person's message in a conversation's Slack thread, acted on as their mailroom user: the
Slack user's email (users.info) names the user (conversations' directory of users), and
conversations decides what they may do (only an inbox's members act). `note: …` becomes an
internal comment (any channel); anything else becomes a reply, for chat conversations only,
queued by outbound (which delivers it to the chat connector). Every refusal is an ephemeral
message to that person and nothing else happens. Slack or mailroom not answering: tried again
(the comment id and the reply's idempotency key come from the Slack event id, so a second try
adds nothing)."""

from __future__ import annotations

import logging
import uuid

import eventlet
from nameko.exceptions import RemoteError, UnknownService

from notifier import slack_client
from notifier.domain import slack
from notifier.slack_handlers import ClaimedEvent

log = logging.getLogger(__name__)
RPC_TIMEOUT_SECONDS = 15
NAMESPACE = uuid.UUID("6f1d9a52-8f7e-4d8a-9f2b-3c0e5a7d1b44")  # comment ids from Slack event ids
UNKNOWN_USER = "mailroom does not know your Slack account's email address, so nothing was done."
NOT_A_MEMBER = "You are not a member of this conversation's inbox: only its members can reply or comment " \
               "from Slack. Nothing was done."
EMPTY_NOTE = "The note is empty: write it after `note:`. Nothing was done."


class TryAgain(Exception):
    """Slack or a mailroom service did not answer: the event is handled again later."""


def _rpc(method, *args):
    try:
        with eventlet.Timeout(RPC_TIMEOUT_SECONDS):
            return method(*args)
    except eventlet.Timeout:
        raise TryAgain(f"{method} did not answer in {RPC_TIMEOUT_SECONDS} s") from None
    except UnknownService as exc:
        raise TryAgain(f"not running: {exc}") from None
    except RemoteError as exc:
        if exc.exc_type in ("HttpError", "Forbidden", "NotFound", "Conflict", "ValidationError"):
            raise  # the request itself was refused: said to the user
        raise TryAgain(f"{exc.exc_type}: {exc.value}"[:500]) from None


def handle(claimed: ClaimedEvent, api_url: str, conversations, outbound) -> str:
    """What became of the event (the stored outcome); TryAgain to handle it again later."""
    message = slack.thread_message(claimed.event)
    if message is None:
        return "ignored: not a person's reply in a thread"
    if claimed.conversation_id is None:
        return "ignored: not the thread of a conversation"
    if message.channel != claimed.channel_id:
        return "ignored: another channel"

    def tell(text: str) -> None:
        try:
            slack_client.post_ephemeral(api_url, claimed.token, message.channel, message.user, text,
                                        message.thread_ts)
        except slack_client.SlackFailed as exc:
            if not exc.answered or exc.retry_after is not None:
                raise  # no answer, or rate limited: the event is handled again
            log.warning("Slack refused the ephemeral for event %s: %s", claimed.event_id, exc)

    try:
        return _act(claimed, message, api_url, conversations, outbound, tell)
    except slack_client.SlackFailed as exc:
        raise TryAgain(str(exc)) from None


def _act(claimed: ClaimedEvent, message: slack.ThreadMessage, api_url: str, conversations, outbound, tell) -> str:
    email = slack_client.user_email(api_url, claimed.token, message.user)
    principal = _rpc(conversations.find_user_by_email, email) if email else None
    if not principal:
        tell(UNKNOWN_USER)
        return f"refused: Slack user {message.user} is no mailroom user"
    context = _rpc(conversations.get_reply_context, claimed.conversation_id, None, False, principal)
    if not context or "forbidden" in context:
        tell(NOT_A_MEMBER)
        return f"refused: {principal['user_id']} is not a member of the inbox"
    note = slack.parse_note(message.text)
    if note is not None:
        body = slack.plain_text(note)
        if not body:
            tell(EMPTY_NOTE)
            return "refused: empty note"
        comment_id = str(uuid.uuid5(NAMESPACE, claimed.event_id))
        try:
            _rpc(conversations.add_comment_as, claimed.conversation_id, body, principal, comment_id)
        except RemoteError as exc:
            tell(f"mailroom refused the note: {exc.value}"[:500])
            return f"refused by conversations: {exc.exc_type}"
        return f"comment {comment_id} added by {principal['user_id']}"
    channel_type = (context.get("conversation") or {}).get("channel_type") or "email"
    if channel_type != "chat":
        tell(slack.EMAIL_ONLY)
        return f"refused: replying to a {channel_type} conversation from Slack"
    text = slack.plain_text(message.text)
    try:
        reply = _rpc(outbound.reply, claimed.conversation_id, {"text": text}, f"slack:{claimed.event_id}", principal)
    except RemoteError as exc:
        tell(f"mailroom refused the reply: {exc.value}"[:500])
        return f"refused by outbound: {exc.exc_type}"
    reply_id = reply.get("id") if isinstance(reply, dict) else None
    return f"reply {reply_id} queued by {principal['user_id']}"
