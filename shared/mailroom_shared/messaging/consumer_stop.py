"""A service process's AMQP consumers stop as soon as there is nothing left to wait for.

nameko 2.14's QueueConsumer (behind every event handler, the RPC consumer and the RPC reply
listener) cancels a consumer only from its own green thread, between two `drain_events` calls,
and each idle `drain_events` waits up to kombu's safety interval (1 s) for a frame. So a graceful
stop waited up to a second for the cancels, and up to a second again in the loop's last
`drain_events` after the last cancel: 2–3 s of nothing per process (measured: 1.7–2.5 s of a
service's stop, nearly all of it). That last wait was also the only grace the in-flight workers
got: the connection closed about a second after the last cancel whether or not their messages had
been acknowledged (those left unacknowledged are redelivered).

`install()` changes, for every QueueConsumer of the process:
- a stop request (a provider unregistering, the consumer killed) ends an idle `drain_events` at
  once: the hub raises in the consumer's green thread the socket.timeout (TimeoutError) that its read timeout
  would have raised a little later (py-amqp keeps a partly read frame for the next read). Only
  while that thread is parked reading in the loop's idle drain, never while it waits for a reply;
- a drain that starts while a request is pending returns at once: the loop handles it first;
- after the last cancel the loop keeps the connection open until every message it delivered has
  been acknowledged or requeued (or the consumer is killed: the grace period's end), then ends
  at once. So SIGTERM drains in-flight work as long as the grace period allows, not one second.
While the service runs nothing changes: an idle drain still ends once a second (heartbeats, the
readiness probe's ConsumerWatch).

mailroom-service (service_process) installs it before it starts the services."""

from __future__ import annotations

import time

import eventlet
from eventlet import hubs
from nameko.messaging import QueueConsumer

SETTLE_POLL_SECONDS = 0.02  # how often the stopping loop looks whether the last acks were sent
HEARTBEAT_CHECK_SECONDS = 1.0  # while it waits for them, as often as an idle drain would
_PRUNE_AT = 64  # settled deliveries are forgotten once this many are remembered

_original: dict = {}


def install() -> None:
    """Patch nameko's QueueConsumer (and so its subclasses) for this process; idempotent."""
    if _original:
        return
    _original.update(create_connection=QueueConsumer.create_connection,
                     handle_message=QueueConsumer.handle_message,
                     unregister_provider=QueueConsumer.unregister_provider,
                     kill=QueueConsumer.kill)
    QueueConsumer.create_connection = _create_connection
    QueueConsumer.handle_message = _handle_message
    QueueConsumer.unregister_provider = _unregister_provider
    QueueConsumer.kill = _kill
    QueueConsumer._idle_draining = False
    QueueConsumer._killed = False


def _deliveries(consumer) -> set:
    deliveries = consumer.__dict__.get("_deliveries")
    if deliveries is None:
        deliveries = consumer.__dict__["_deliveries"] = set()
    return deliveries


def _settled(message) -> bool:
    # a message on a closed channel is the broker's again (nameko's ack_message skips it too)
    channel = message.channel
    return message.acknowledged or channel is None or not channel.connection


def _handle_message(self, provider, body, message):
    deliveries = _deliveries(self)
    if len(deliveries) >= _PRUNE_AT:
        deliveries.difference_update([m for m in deliveries if _settled(m)])
    deliveries.add(message)
    return _original["handle_message"](self, provider, body, message)


def _unsettled(consumer) -> int:
    return sum(1 for message in _deliveries(consumer) if not _settled(message))


def _create_connection(self):
    connection = _original["create_connection"](self)
    drain = connection.drain_events

    def drain_events(**kwargs):  # kombu's consume loop: drain_events(timeout=safety_interval)
        if self.should_stop:
            # the last consumer is cancelled: the workers' acks still need this connection
            _wait_until_settled(self, connection)
            raise TimeoutError("stopping")
        if self._pending_remove_providers:
            raise TimeoutError("a consumer to cancel")
        self._idle_draining = True
        try:
            return drain(**kwargs)
        finally:
            self._idle_draining = False

    connection.drain_events = drain_events
    return connection


def _wait_until_settled(consumer, connection) -> None:
    checked = time.monotonic()
    while not consumer._killed and _unsettled(consumer):
        eventlet.sleep(SETTLE_POLL_SECONDS)
        if time.monotonic() - checked >= HEARTBEAT_CHECK_SECONDS:
            connection.heartbeat_check()
            checked = time.monotonic()


def _interrupt_idle_drain(consumer) -> None:
    """Runs in the hub, as a read timeout would: ends the consumer thread's idle drain now."""
    thread = consumer._gt
    if thread is None or thread.dead or not consumer._idle_draining:
        return
    hub = hubs.get_hub()
    reading = any(listener.greenlet is thread for listener in hub.listeners[hub.READ].values())
    writing = any(listener.greenlet is thread for listener in hub.listeners[hub.WRITE].values())
    if reading and not writing:
        thread.throw(TimeoutError("timed out"))  # socket.timeout, as eventlet raises


def _wake(consumer) -> None:
    # from the hub's next turn: by then the caller has recorded its request and is waiting
    hubs.get_hub().schedule_call_global(0, _interrupt_idle_drain, consumer)


def _unregister_provider(self, provider):
    _wake(self)
    return _original["unregister_provider"](self, provider)


def _kill(self):
    self._killed = True
    _wake(self)
    return _original["kill"](self)
