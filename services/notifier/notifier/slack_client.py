"""Slack's Web API through slack_sdk's WebClient, at SLACK_API_URL (Slack's own by default; the
tests point it at a local server). No retries inside the SDK (a retried chat.postMessage could
post twice): the Slack worker decides, and a 429 comes back as `Rate limited` with its
Retry-After. Green under nameko (urllib over monkey-patched sockets)."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from notifier.domain.slack import POST_METADATA_TYPE

TIMEOUT_SECONDS = 15


class SlackFailed(Exception):
    """Slack refused or did not answer; `retry_after` (seconds) when it was a 429; `answered`:
    Slack answered (so nothing was posted), else the request may have reached it (a timeout)."""

    def __init__(self, message: str, retry_after: float | None = None, answered: bool = True):
        super().__init__(message)
        self.retry_after = retry_after
        self.answered = answered


@dataclass(frozen=True)
class Posted:
    ts: str
    found: bool = False  # found in the channel (posted before a crash), not posted now


def _client(api_url: str, token: str) -> WebClient:
    return WebClient(token=token, base_url=api_url.rstrip("/") + "/", timeout=TIMEOUT_SECONDS, retry_handlers=[])


def _call(method, **kwargs):
    try:
        return method(**kwargs)
    except SlackApiError as exc:
        response = exc.response
        if response is not None and response.status_code == 429:
            try:
                retry_after = float(response.headers.get("Retry-After") or response.headers.get("retry-after") or 1)
            except (TypeError, ValueError):
                retry_after = 1.0
            raise SlackFailed("rate limited (429)", max(retry_after, 1.0)) from None
        error = response.get("error") if response is not None and hasattr(response, "get") else None
        raise SlackFailed(f"slack: {error or exc}"[:500]) from None
    except (SlackClientError, OSError, ValueError) as exc:
        raise SlackFailed(f"{type(exc).__name__}: {exc}"[:500], answered=False) from None


def post_message(api_url: str, token: str, channel: str, text: str, thread_ts: str | None, post_key: str) -> Posted:
    answer = _call(_client(api_url, token).chat_postMessage, channel=channel, text=text, thread_ts=thread_ts,
                   unfurl_links=False, unfurl_media=False,
                   metadata={"event_type": POST_METADATA_TYPE, "event_payload": {"post_key": post_key}})
    return Posted(str(answer["ts"]))


def find_post(api_url: str, token: str, channel: str, thread_ts: str | None, post_key: str,
              oldest: float) -> Posted | None:
    """The post made with `post_key` (its metadata) if it is in the channel (a thread's replies, or
    the channel's history since `oldest`): whether a post interrupted by a crash went out."""
    client = _client(api_url, token)
    cursor = None
    for _ in range(20):  # pages of 200: far more than one conversation's notifications in a lease
        if thread_ts:
            answer = _call(client.conversations_replies, channel=channel, ts=thread_ts, include_all_metadata=True,
                           limit=200, cursor=cursor)
        else:
            answer = _call(client.conversations_history, channel=channel, oldest=f"{oldest:.6f}",
                           include_all_metadata=True, limit=200, cursor=cursor)
        for message in answer.get("messages") or []:
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == POST_METADATA_TYPE and \
                    (metadata.get("event_payload") or {}).get("post_key") == post_key:
                return Posted(str(message["ts"]), found=True)
        cursor = (answer.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return None
    return None


def post_ephemeral(api_url: str, token: str, channel: str, user: str, text: str, thread_ts: str | None) -> None:
    _call(_client(api_url, token).chat_postEphemeral, channel=channel, user=user, text=text, thread_ts=thread_ts)


def user_email(api_url: str, token: str, user: str) -> str | None:
    """The Slack user's email (users.info; needs the users:read.email scope); None without one."""
    try:
        answer = _call(_client(api_url, token).users_info, user=user)
    except SlackFailed as exc:
        if exc.answered and exc.retry_after is None and "user_not_found" in str(exc):
            return None  # no such user: nobody to act as
        raise
    user_info = answer.get("user") or {}
    if user_info.get("deleted") or user_info.get("is_bot"):
        return None
    return (user_info.get("profile") or {}).get("email") or None
