"""nameko adapters shared by the services: database and outbox-relay dependency providers, the
topology declaration, and an event handler that retries with backoff and dead-letters.

Domain code never imports this module; services' `service.py` files do.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from functools import partial

import eventlet
from eventlet import patcher
from eventlet.event import Event
from marshmallow import ValidationError
from nameko.amqp.publish import get_producer
from nameko.events import EventHandler
from nameko.extensions import DependencyProvider
from nameko.messaging import QueueConsumer

from mailroom_shared import config
from mailroom_shared.db import Database
from mailroom_shared.messaging import outbox as outbox_module
from mailroom_shared.messaging import topology
from mailroom_shared.messaging.connection import amqp_connection, amqp_ssl
from mailroom_shared.messaging.dead_letters import (
    ATTEMPT_HEADER,
    ERROR_HEADER,
    FIRST_FAILED_HEADER,
    LAST_FAILED_HEADER,
)
from mailroom_shared.messaging.outbox import OutboxRelay, PendingEvent, on_events_committed
from mailroom_shared.messaging.publishing import ConfirmedBatchPublisher, OutgoingMessage

log = logging.getLogger(__name__)
_real_threading = patcher.original("threading")  # the OS thread, not the green one



class PoisonMessage(Exception):
    """Raised by a handler for a message that can never succeed: dead-lettered at once."""


def _amqp_uri(container) -> str:
    return container.config.get("AMQP_URI") or config.amqp_uri()


def _amqp_ssl(container) -> dict | None:
    """The TLS options nameko's own connections use (AMQP_SSL, set by mailroom-service), so the
    connections opened here are secured the same way."""
    return container.config.get("AMQP_SSL") or amqp_ssl(_amqp_uri(container))


class DatabaseProvider(DependencyProvider):
    """Injects the service's Database (engine + transaction())."""

    def __init__(self, service: str):
        self.service = service
        self.database: Database | None = None

    def setup(self):
        self.database = Database(database_url_for(self.container, self.service))

    def stop(self):
        if self.database:
            self.database.dispose()

    def get_dependency(self, worker_ctx):
        return self.database


class TopologyProvider(DependencyProvider):
    """Declares the whole messaging topology when the service starts, before anything publishes.
    A service with retired subscriptions retires their queues then, and again every
    RETIRE_INTERVAL_S: a process of the release before, started meanwhile, binds them again."""

    def setup(self):
        with amqp_connection(_amqp_uri(self.container), _amqp_ssl(self.container)) as connection:
            connection.ensure_connection(max_retries=5)
            topology.declare_topology(connection)
            self._retire(connection)

    def start(self):
        if topology.retired_subscriptions_of(self.container.service_name):
            self.container.spawn_managed_thread(self._retire_again, identifier="topology.retire")

    def _retire_again(self):
        while True:
            eventlet.sleep(topology.RETIRE_INTERVAL_S)
            try:
                with amqp_connection(_amqp_uri(self.container), _amqp_ssl(self.container)) as connection:
                    self._retire(connection)
            except Exception:  # noqa: BLE001 - the broker away: the next pass tries again
                log.warning("retiring the queues of dropped subscriptions failed", exc_info=True)

    def _retire(self, connection) -> None:
        # clean-up only: a refusal never keeps the service from starting; the next pass tries again
        try:
            topology.retire_subscriptions(connection, self.container.service_name)
        except Exception:  # noqa: BLE001
            log.warning("retiring the queues of dropped subscriptions failed; trying again in %.0f s",
                        topology.RETIRE_INTERVAL_S, exc_info=True)


class WakeHandle:
    """What a BackgroundWorker injects: call it (or its `wake`) to have the worker run now."""

    def __init__(self, wake):
        self.wake = wake

    def __call__(self) -> None:
        self.wake()


def database_url_for(container, service: str) -> str:
    return container.config.get("DATABASE_URLS", {}).get(service) or config.database_url(service)


def _os_thread_id() -> int:
    return _real_threading.get_ident()


PEER_SAFETY_POLL_SECONDS = 60.0  # a ConcurrentWorker's threads other than the first: woken, else this


def _next_backoff(backoff: float, failed: bool) -> float:
    return min(max(backoff * 2, 0.5), 10.0) if failed else 0.0


class BackgroundWorker(DependencyProvider):
    """A managed green thread that does work until there is none, then sleeps until woken (after
    a commit in this process) or until the poll interval passes (work written by another process).
    A failing pass is logged and retried with backoff up to 10 s: no hot loop. Subclasses define
    `identifier`, `poll_interval` (in `setup`) and `work_once() -> bool` (True: did something)."""

    identifier = "background_worker"
    poll_interval = 0.2

    def __init__(self, *args, **kwargs):
        self._stopping = False
        self._wake = Event()
        self._loop_thread = _os_thread_id()  # eventlet's Event may only be sent from the hub's thread

    def start(self):
        self.container.spawn_managed_thread(self._run, identifier=self.identifier)

    def wake(self) -> None:
        # from a native thread (eventlet.tpool) it must not touch the hub: the poll finds the work
        if not self._wake.ready() and _os_thread_id() == self._loop_thread:
            self._wake.send(True)

    def work_once(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def failed_quietly(self) -> bool:
        """Whether the last pass failed without raising (e.g. the broker refused a publish)."""
        return False

    def after_work(self, done: int) -> None:
        """Called after each busy stretch with how much was done."""

    def _run(self):
        """The worker's loop: work until there is none, then sleep until woken or polled."""
        backoff = 0.0
        while not self._stopping:
            backoff = _next_backoff(backoff, self._work_stretch(lambda done: self.work_once()))
            if backoff:
                eventlet.sleep(backoff)
                continue
            with eventlet.Timeout(self.poll_interval, False):
                self._wake.wait()
            if self._wake.ready():
                self._wake.reset()

    def _work_stretch(self, step: Callable[[int], bool]) -> bool:
        """`step(done)` until it finds nothing (False), then `after_work`; whether the stretch
        failed (logged; the caller backs off)."""
        done, failed = 0, False
        try:
            while not self._stopping and step(done):
                done += 1
                eventlet.sleep(0)  # let HTTP requests and consumers run between items
            failed = self.failed_quietly()
        except Exception:
            log.exception("%s failed; retrying", self.identifier)
            failed = True
        if done:
            self.after_work(done)
        return failed

    def kill(self):
        self._stopping = True

    def get_dependency(self, worker_ctx):
        return WakeHandle(self.wake)


class ConcurrentWorker(BackgroundWorker):
    """A BackgroundWorker run by `threads()` green threads, each claiming its own item in
    `work_once` (FOR UPDATE SKIP LOCKED and a lease): the delivery workers. An item in flight is
    marked with `with self.busy():`; stopping wakes the threads, waits up to `drain_seconds` for
    the items in flight to finish and be recorded, then calls `close()`.

    Each claim is a transaction, so the threads claim only when there is reason to (#16: waking
    every thread for every queued email made an empty claim per idle thread, and each stretch of
    work ended with one more):
    - `wake()` (a commit in this process queued an item) wakes one idle thread, which claims once
      per wake-up not yet taken; with every thread busy, the next one to finish takes it;
    - only the first thread polls (retries come due, items another process wrote); a poll that
      finds work wakes one more thread, and each thread that joins that way wakes the next while
      it finds work, so a backlog is taken by all of them; the others search on their own only
      every PEER_SAFETY_POLL_SECONDS."""

    drain_seconds = 30.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._busy = 0
        self._idle: list[Event] = []  # one per sleeping thread; the last to fall asleep is woken first
        self._wakes = 0  # wake-ups for committed work that no claim has taken yet

    def threads(self) -> int:
        return 1

    def start(self):
        for n in range(self.threads()):
            self.container.spawn_managed_thread(partial(self._run, n), identifier=f"{self.identifier}.{n}")

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1

    def wake(self) -> None:
        # from a native thread (eventlet.tpool) it must not touch the hub: the poll finds the work
        if _os_thread_id() != self._loop_thread:
            return
        if self._stopping:
            while self._idle:
                self._idle.pop().send("stop")
            return
        self._wakes += 1
        if self._idle:
            self._idle.pop().send("work")

    def _run(self, index: int = 0):
        backoff = 0.0
        # the first thread looks at once; the others wait to be woken
        searching, awake = True, index == 0
        while not self._stopping:
            if not awake:
                searching = self._sleep(index) != "work"
                if self._stopping:
                    break
            awake = False
            backoff = _next_backoff(backoff, self._work_stretch(partial(self._claim, searching)))
            if backoff:
                eventlet.sleep(backoff)
                searching, awake = True, True  # try again what failed

    def _claim(self, searching: bool, done: int) -> bool:
        """One claim of a stretch. A woken thread claims at least once, then goes on while
        wake-ups are waiting, or until a claim is empty when it is searching."""
        if done and not searching and self._wakes <= 0:
            return False
        self._wakes = max(self._wakes - 1, 0)  # taken now: the claim runs while the others wait
        if not self.work_once():
            self._wakes = 0  # nothing is due: work committed later wakes a thread again
            return False
        if searching and not done and self._idle:
            self._idle.pop().send("search")  # found by searching: there may be more
        return True

    def _sleep(self, index: int) -> str:
        """Until woken ("work": committed work; "search": a peer found work by searching) or the
        poll is due ("search")."""
        if self._wakes > 0 or self._stopping:
            return "work"  # committed while every thread was busy
        event = Event()
        self._idle.append(event)
        reason = "search"
        timeout = self.poll_interval if index == 0 else max(self.poll_interval, PEER_SAFETY_POLL_SECONDS)
        try:
            with eventlet.Timeout(timeout, False):
                reason = event.wait()
        finally:
            if event in self._idle:
                self._idle.remove(event)
        return reason

    def stop(self):
        self._stopping = True
        self.wake()
        deadline = time.monotonic() + self.drain_seconds
        while self._busy and time.monotonic() < deadline:
            eventlet.sleep(0.1)
        self.close()

    def close(self) -> None:
        """Release what the worker holds (its database, its connections) once drained."""
        database = getattr(self, "database", None)
        if database is not None:
            database.dispose()


class OutboxRelayProvider(BackgroundWorker):
    """Runs the outbox relay: publishes committed events, polls, or wakes when told to. Injected
    as a `wake()` callable: call it after committing an event to publish at once."""

    def __init__(self, service: str, table_getter, poll_interval: float | None = None):
        super().__init__()
        self.service = service
        self.table_getter = table_getter  # callable returning the service's outbox Table
        self.configured_poll_interval = poll_interval
        self._unregister = lambda: None
        self._read_generation, self._last_read, self._more = -1, 0.0, True

    def setup(self):
        self.identifier = f"{self.service}.outbox_relay"
        self.database = Database(database_url_for(self.container, self.service))
        # a batch goes out on one channel and the broker's confirms are awaited once per batch
        self.publisher = ConfirmedBatchPublisher(_amqp_uri(self.container), ssl_options=_amqp_ssl(self.container))
        self.relay = OutboxRelay(self.database, self.table_getter(), publish_batch=self._publish_batch)
        # every commit of this process that recorded events wakes the relay (outbox.on_events_committed):
        # the poll only finds what another process left (a replica that crashed before publishing)
        self.poll_interval = self.configured_poll_interval or config.env_float("OUTBOX_POLL_SECONDS", 5.0)
        self._unregister = on_events_committed(self.wake)

    def _publish_batch(self, items: list[tuple[PendingEvent, str, str]]) -> tuple[int, Exception | None]:
        messages = []
        for event, exchange, routing_key in items:
            # AMQP type = the stored envelope's CloudEvents type (its version), app_id = its source
            messages.append(OutgoingMessage(event.body, topology.events_exchange(exchange.split(".")[0]).name,
                                            routing_key, event.event_id, event.type, event.source))
        return self.publisher.publish_batch(messages)

    def work_once(self) -> bool:
        # A pass reads the outbox only if this process committed events since the last read, the
        # last pass left work (a full batch, or a failed publish), or the poll is due (what another
        # process left). The wake-ups for events already published (the kit wakes the relay after
        # every event, and so does the commit) and the pass after every publish that found nothing
        # were three in four of the relay's transactions.
        generation, now = outbox_module.events_committed(), time.monotonic()
        if (not self._more and generation == self._read_generation
                and now - self._last_read < self.poll_interval * 0.9):
            return False
        self._read_generation, self._last_read = generation, now
        published = self.relay.relay_once()
        self._more = published >= self.relay.batch_size or self.relay.last_failed
        return published >= self.relay.batch_size

    def failed_quietly(self) -> bool:
        return self.relay.last_failed

    def stop(self):
        # Graceful: one last pass publishes what committed before SIGTERM.
        self._stopping = True
        self._unregister()
        try:
            self.relay.relay_once()
        except Exception:
            log.exception("final outbox relay pass of %s failed; rows stay pending", self.service)
        self.publisher.close()
        self.database.dispose()

    def kill(self):
        super().kill()
        self._unregister()


def _publish_to_queue(container, queue, body, headers, properties) -> None:
    with get_producer(_amqp_uri(container), confirms=True, ssl=_amqp_ssl(container)) as producer:
        producer.publish(body, exchange="", routing_key=queue.name, headers=headers, declare=[queue],
                         delivery_mode=2, retry=True, **properties)


class DeadLetteringQueueConsumer(QueueConsumer):
    """kombu acks (and so loses) a message whose body cannot be decoded: park it in the queue's
    dead-letter queue instead, with the decoding error."""

    def get_consumers(self, consumer_cls, channel):
        consumers = super().get_consumers(consumer_cls, channel)
        for provider, consumer in self._consumers.items():
            consumer.on_decode_error = partial(self._dead_letter_undecodable, provider)
        return consumers

    # nameko skips an ack or requeue on a connection it knows is gone, and ignores amqp's own
    # ConnectionError; a socket the broker reset meanwhile (a RabbitMQ restart) raises OSError
    # (ConnectionResetError, BrokenPipeError) instead, which ended the worker with an error and
    # so the whole service container (exit 1, seen in the chaos run). The message is the broker's
    # again once that connection is gone: it is redelivered, and the handler's processed-events
    # claim turns the redelivery into nothing.
    def ack_message(self, message):
        try:
            super().ack_message(message)
        except OSError as exc:
            log.warning("could not acknowledge a message, its connection is gone (%s): the broker redelivers it",
                        exc)

    def requeue_message(self, message):
        try:
            super().requeue_message(message)
        except OSError as exc:
            log.warning("could not requeue a message, its connection is gone (%s): the broker redelivers it", exc)

    def _dead_letter_undecodable(self, provider, message, exc):
        queue = topology.dead_letter_queue(provider.queue.name)
        log.error("undecodable message on %s parked in %s: %s", provider.queue.name, queue.name, exc)
        headers = dict(message.headers or {})
        headers[ERROR_HEADER] = f"undecodable body: {exc}"[:1000]
        headers[FIRST_FAILED_HEADER] = headers[LAST_FAILED_HEADER] = dt.datetime.now(dt.UTC).isoformat()
        _publish_to_queue(self.container, queue, message.body, headers,
                          {"content_type": message.content_type, "content_encoding": message.content_encoding})
        message.ack()


class RetryingEventHandler(EventHandler):
    """nameko's EventHandler acks a failed message (lost) or requeues it in a hot loop. This one
    republishes a failed message to a delay queue (then back to its own queue) a bounded number of
    times, then parks it in `<queue>.dlq` with the error, and acks the original only after the
    broker confirmed the republish. Permanent errors (invalid payload, PoisonMessage) go straight
    to the dead-letter queue."""

    permanent_errors = (ValidationError, PoisonMessage)
    queue_consumer = DeadLetteringQueueConsumer()

    def handle_message_processed(self, message, result=None, exc_info=None):
        if exc_info is None:
            self.queue_consumer.ack_message(message)
            return
        try:
            self._reroute_failed(message, exc_info)
        except Exception:
            # Could not republish (broker trouble): requeue so nothing is lost.
            log.exception("could not reroute failed message on %s; requeueing", self.queue.name)
            self.queue_consumer.requeue_message(message)
            eventlet.sleep(1)  # avoid a hot loop while the broker is unhealthy
            return
        self.queue_consumer.ack_message(message)

    def _reroute_failed(self, message, exc_info) -> str:
        """Republish a failed message; what became of it: "retried", or "permanent" / "exhausted"
        (dead-lettered at once, or after the last retry)."""
        exc_type, exc, tb = exc_info
        headers = dict(message.headers or {})
        attempt = int(headers.get(ATTEMPT_HEADER, 0)) + 1
        error = "".join(traceback.format_exception_only(exc_type, exc)).strip()[:1000]
        headers[ATTEMPT_HEADER] = attempt
        headers[ERROR_HEADER] = error
        now = dt.datetime.now(dt.UTC).isoformat()
        headers.setdefault(FIRST_FAILED_HEADER, now)
        headers[LAST_FAILED_HEADER] = now
        queue_name = self.queue.name
        if isinstance(exc, self.permanent_errors):
            outcome = "permanent"
        elif attempt > len(topology.RETRY_DELAYS_MS):
            outcome = "exhausted"
        else:
            outcome = "retried"
        if outcome == "retried":
            target = topology.retry_queues(queue_name)[attempt - 1]
            log.warning("retrying message from %s (attempt %d): %s", queue_name, attempt, error)
        else:
            target = topology.dead_letter_queue(queue_name)
            log.error("dead-lettering message from %s after %d attempt(s): %s", queue_name, attempt, error)
        _publish_to_queue(self.container, target, message.body, headers, {
            "content_type": message.content_type, "content_encoding": message.content_encoding,
            "message_id": message.properties.get("message_id"), "type": message.properties.get("type"),
        })
        return outcome


reliable_event_handler = RetryingEventHandler.decorator
