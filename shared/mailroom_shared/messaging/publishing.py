"""Publishing an outbox batch with one wait for the broker's confirms.

Publishing with a confirm per message (what nameko's and kombu's publishers do) costs a round
trip and a wake-up per event. Here a batch goes out on one channel in confirm mode and the
confirms are awaited once; the result is the *prefix* of the batch the broker confirmed and
routed, so the relay marks exactly those rows published and retries from the first that was not.

Ordering: if message k is refused (nack, or returned as unroutable — which the audit queue bound
with `#` makes impossible while the topology exists), messages after k in the same batch may
already have reached their queues; they are published again after k (consumers de-duplicate), so
a consumer can see k+1 before k in that failure case only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import amqp
from kombu import Connection

from mailroom_shared.messaging.connection import amqp_connection

log = logging.getLogger(__name__)


class PublishRefused(Exception):
    """The broker nacked or returned (unroutable) a message of the batch."""


@dataclass(frozen=True)
class OutgoingMessage:
    body: str  # JSON text, sent as is
    exchange: str
    routing_key: str
    message_id: str
    type: str
    app_id: str


class ConfirmedBatchPublisher:
    """One connection and one channel in confirm mode, opened on first use and again after any
    failure. Not thread-safe: one relay (one green thread) owns it."""

    def __init__(self, amqp_uri: str, confirm_timeout: float = 30.0, ssl_options: dict | None = None):
        self.amqp_uri = amqp_uri
        self.ssl_options = ssl_options  # TLS (messaging.connection); None: from the environment
        self.confirm_timeout = confirm_timeout
        self._connection: Connection | None = None
        self._channel = None
        self._tag = 0  # delivery tags count the channel's publishes since confirm.select
        self._pending: set[int] = set()
        self._nacked: set[int] = set()
        self._returned: set[str] = set()  # message ids

    def publish_batch(self, messages: list[OutgoingMessage]) -> tuple[int, Exception | None]:
        """Publish `messages` in order; (how many of the first ones the broker confirmed and
        routed, the error that stopped the rest or None)."""
        if not messages:
            return 0, None
        try:
            channel = self._open()
            self._nacked.clear()
            self._returned.clear()
            first = self._tag + 1
            for message in messages:
                channel.basic_publish(amqp.Message(
                    message.body, content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                    message_id=message.message_id, type=message.type, app_id=message.app_id),
                    exchange=message.exchange, routing_key=message.routing_key, mandatory=True)
                self._tag += 1
                self._pending.add(self._tag)
            deadline = time.monotonic() + self.confirm_timeout
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no publisher confirm within {self.confirm_timeout} s")
                self._connection.drain_events(timeout=remaining)
        except Exception as exc:
            # nothing of this batch is known to be confirmed: all of it is published again later
            self.close()
            return 0, exc
        for index, message in enumerate(messages):
            if first + index in self._nacked:
                return index, PublishRefused(f"broker nacked {message.type} {message.message_id}")
            if message.message_id in self._returned:
                return index, PublishRefused(f"unroutable: {message.exchange} / {message.routing_key} "
                                             f"({message.type} {message.message_id})")
        return len(messages), None

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._pending.clear()
        if connection is not None:
            try:
                connection.close()
            except Exception:  # already broken: nothing to close cleanly
                log.debug("closing a broken publisher connection", exc_info=True)

    def _open(self):
        if self._channel is None:
            connection = amqp_connection(self.amqp_uri, self.ssl_options)
            connection.connect()
            channel = connection.channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            channel.events["basic_return"].add(self._on_return)
            self._connection, self._channel, self._tag = connection, channel, 0
        return self._channel

    def _settle(self, tag: int, multiple: bool) -> set[int]:
        settled = {t for t in self._pending if t <= tag} if multiple else ({tag} & self._pending)
        self._pending -= settled
        return settled

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._nacked |= self._settle(tag, multiple)

    def _on_return(self, _exc, _exchange, _routing_key, message) -> None:
        self._returned.add(message.properties.get("message_id"))
