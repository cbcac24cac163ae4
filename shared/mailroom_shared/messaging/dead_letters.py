"""Dead letters an operator can work with: list, show, replay, purge (`mailroom dead-letters`).

A message lands in `<queue>.dlq` when its handler failed on every retry (1 s, 5 s, 30 s, 2 min,
10 min: `topology.RETRY_DELAYS_MS`) or failed permanently at once (an invalid payload, a poison
message, an undecodable body). Its headers say why (`x-mailroom-error`), how often it was tried
(`x-mailroom-attempt`) and when it first and last failed.

Browsing is non-destructive: messages are fetched unacknowledged and handed back when the channel
closes, so a concurrent replay never loses one. Replay publishes a message back to its own queue
with publisher confirms and acknowledges the dead letter only after the broker confirmed: a crash
in between leaves a copy in both places, and the consumer's processed-events table makes the
second one a no-op — replay is processed exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import amqp

from mailroom_shared.messaging import topology
from mailroom_shared.messaging.connection import amqp_connection

ATTEMPT_HEADER = "x-mailroom-attempt"
ERROR_HEADER = "x-mailroom-error"
FIRST_FAILED_HEADER = "x-mailroom-first-failed-at"
LAST_FAILED_HEADER = "x-mailroom-last-failed-at"
REPLAYED_HEADER = "x-mailroom-replayed"
DLQ_SUFFIX = ".dlq"


class UnknownQueue(ValueError):
    pass


@dataclass(frozen=True)
class DeadLetter:
    queue: str  # the subscription queue it failed in (replay target)
    position: int  # 1-based place in the dead-letter queue when it was read
    message_id: str | None  # the CloudEvents id (AMQP message_id)
    event_type: str | None
    error: str | None
    attempts: int
    first_failed_at: str | None
    last_failed_at: str | None
    replayed: int
    body: bytes

    def envelope(self) -> dict | None:
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None
        return value if isinstance(value, dict) else None

    def summary(self) -> dict:
        return {"queue": self.queue, "position": self.position, "id": self.message_id, "type": self.event_type,
                "error": self.error, "attempts": self.attempts, "first_failed_at": self.first_failed_at,
                "last_failed_at": self.last_failed_at, "replayed": self.replayed}


def subscription_queues() -> list[str]:
    return sorted(sub.queue_name for sub in topology.SUBSCRIPTIONS)


def resolve_queue(name: str) -> str:
    """The subscription queue meant by `name`: its full name, its `.dlq`, or the end of it
    (`contacts.handle_message_received`). Ambiguous or unknown names are refused."""
    name = name.removesuffix(DLQ_SUFFIX)
    queues = subscription_queues()
    if name in queues:
        return name
    matches = [q for q in queues if q.endswith(name) or q.split("--", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UnknownQueue(f"no subscription queue {name!r}; known: {', '.join(queues)}")
    raise UnknownQueue(f"{name!r} is ambiguous: {', '.join(matches)}")


class DeadLetters:
    def __init__(self, amqp_uri: str):
        self.amqp_uri = amqp_uri

    @contextmanager
    def _channel(self) -> Iterator[amqp.Channel]:
        with amqp_connection(self.amqp_uri, connect_timeout=10) as connection:
            connection.ensure_connection(max_retries=3)
            channel = connection.connection.channel()  # a py-amqp channel: basic_get and confirms
            try:
                yield channel
            finally:
                if channel.is_open:
                    channel.close()  # unacknowledged messages go back to their queues, in order

    def counts(self) -> dict[str, int]:
        """Messages waiting in each subscription's dead-letter queue (0 when not declared yet)."""
        counts = {}
        with self._channel() as channel:
            for queue in subscription_queues():
                counts[queue] = self._depth(channel, queue + DLQ_SUFFIX)
                if not channel.is_open:
                    channel = channel.connection.channel()
        return counts

    @staticmethod
    def _depth(channel: amqp.Channel, name: str) -> int:
        try:
            return channel.queue_declare(name, passive=True).message_count
        except amqp.exceptions.NotFound:
            return 0

    def browse(self, queue: str, limit: int = 50) -> list[DeadLetter]:
        """Up to `limit` dead letters of `queue`, oldest first, left where they are."""
        queue = resolve_queue(queue)
        with self._channel() as channel:
            letters = []
            while len(letters) < limit:
                message = channel.basic_get(queue + DLQ_SUFFIX, no_ack=False)
                if message is None:
                    break
                letters.append(_letter(queue, len(letters) + 1, message))
            return letters  # closing the channel hands every fetched message back

    def replay(self, queue: str, message_id: str | None = None, limit: int | None = None) -> int:
        """Move dead letters back to their queue (all of them, the first `limit`, or the one(s)
        with CloudEvents id `message_id`); how many were moved."""
        queue = resolve_queue(queue)
        return self._take(queue, message_id, limit, republish=True)

    def purge(self, queue: str, message_id: str | None = None) -> int:
        """Drop dead letters for good (all, or those with `message_id`); how many were dropped."""
        queue = resolve_queue(queue)
        if message_id is None:
            with self._channel() as channel:
                try:
                    return channel.queue_purge(queue + DLQ_SUFFIX) or 0
                except amqp.exceptions.NotFound:
                    return 0
        return self._take(queue, message_id, None, republish=False)

    def _take(self, queue: str, message_id: str | None, limit: int | None, *, republish: bool) -> int:
        moved = 0
        with self._channel() as channel:
            if republish:
                channel.confirm_select()
            # Only as many as were there when we started: a message that fails again after a replay
            # comes back to the end of the queue and must not be replayed in a loop.
            waiting = self._depth(channel, queue + DLQ_SUFFIX)
            for _ in range(waiting):
                if limit is not None and moved >= limit:
                    break
                message = channel.basic_get(queue + DLQ_SUFFIX, no_ack=False)
                if message is None:
                    break
                if message_id is not None and message.properties.get("message_id") != message_id:
                    continue  # not acked: handed back when the channel closes
                if republish:
                    channel.basic_publish_confirm(_replayed(message), exchange="", routing_key=queue,
                                                  mandatory=True)
                channel.basic_ack(message.delivery_tag)
                moved += 1
        return moved


def _headers(message: amqp.Message) -> dict:
    return dict(message.properties.get("application_headers") or {})


def _text(value) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _letter(queue: str, position: int, message: amqp.Message) -> DeadLetter:
    headers = _headers(message)
    return DeadLetter(
        queue=queue, position=position, message_id=_text(message.properties.get("message_id")),
        event_type=_text(message.properties.get("type")), error=_text(headers.get(ERROR_HEADER)),
        attempts=int(headers.get(ATTEMPT_HEADER) or 0), first_failed_at=_text(headers.get(FIRST_FAILED_HEADER)),
        last_failed_at=_text(headers.get(LAST_FAILED_HEADER)), replayed=int(headers.get(REPLAYED_HEADER) or 0),
        body=bytes(message.body) if not isinstance(message.body, str) else message.body.encode())


def _replayed(message: amqp.Message) -> amqp.Message:
    """The same message with a fresh retry budget; why and when it failed before stays visible."""
    headers = _headers(message)
    headers.pop(ATTEMPT_HEADER, None)
    headers[REPLAYED_HEADER] = int(headers.get(REPLAYED_HEADER) or 0) + 1
    properties = {key: value for key, value in message.properties.items()
                  if key in ("content_type", "content_encoding", "message_id", "type", "app_id", "timestamp",
                             "correlation_id")}
    return amqp.Message(message.body, application_headers=headers, delivery_mode=2, **properties)
