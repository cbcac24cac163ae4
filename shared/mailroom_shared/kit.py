"""The service kit: what every mailroom service's `service.py` is made of, so that the five
services read the same way (docs/architecture.md, "One service template").

    from mailroom_shared.kit import consumes, endpoint, service_base

    Base = service_base(SERVICE_NAME, models.outbox, models.processed_events, settings.load,
                        publishes=PUBLISHES)  # {"contact_created": 1, ...}: the versions it publishes

    class ContactsService(Base):
        name = SERVICE_NAME

        @consumes("ingest", "message_received")
        def handle_message_received(self, session, data, envelope):
            return handlers.record_inbound_message(session, self.outbox, data, envelope["id"], self.settings)

        @endpoint("GET", "/api/contacts/<string:contact_id>")
        def get_contact(self, request, contact_id):
            with self.db.transaction() as session:
                return queries.contact_view(get_or_404(session, Contact, contact_id, "contact"))

* `service_base(...)` declares the providers every service has — `topology` (declared before
  anything publishes), `db` (the service's Database), `relay` (the outbox relay, woken after a
  commit), `settings` (one frozen settings object, loaded once when the container starts) — and
  the two per-service tables' helpers as class attributes: `outbox` (Outbox) and `processed`
  (ProcessedEvents: one per service, so every handler of a service shares one group commit).
* `@consumes(source, event)` is the one way to handle an event: the envelope is read (the schema
  picked from its CloudEvents `type`), the method runs once per event in a transaction of its own
  or of a group commit, the relay is woken, and failures are retried then dead-lettered.
* `@endpoint(method, path)` is the one way to expose HTTP: JSON in and out, the shared errors
  (mailroom_shared.http) as clear answers, and a verified caller in `request.principal`
  (`auth=False` for health checks, signed connector callbacks and capability links).
* Operability comes with the base (mailroom_shared.observability): `GET /health/live`,
  `GET /health/ready` and `GET /metrics` on the service's HTTP port (and on
  `MAILROOM_METRICS_PORT` when set), handler and HTTP metrics counted by `@consumes` and
  `@endpoint`, the outbox backlog read at scrape time, and log lines that name the event handled.

The module imports nameko; domain code never imports it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import eventlet
import eventlet.tpool
import eventlet.wsgi
from nameko.extensions import DependencyProvider
from nameko.messaging import QueueConsumer
from nameko.web.handlers import http
from sqlalchemy import Table, event
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from mailroom_shared import config, observability
from mailroom_shared import migrations as _migrations  # noqa: F401 - imported with the service module (below)
from mailroom_shared.auth import Principal, authenticate
from mailroom_shared.events import tracing
from mailroom_shared.events.envelope import parse_envelope
from mailroom_shared.http import HttpError, json_endpoint
from mailroom_shared.messaging.idempotency import ProcessedEvents
from mailroom_shared.messaging.nameko_adapters import (
    DatabaseProvider,
    DeadLetteringQueueConsumer,
    OutboxRelayProvider,
    RetryingEventHandler,
    TopologyProvider,
)
from mailroom_shared.messaging.outbox import Outbox

log = logging.getLogger(__name__)

# alembic (mailroom_shared.migrations) is imported with the service module, not in the
# ObservabilityProvider's setup: importing it there kept the starting service's event loop busy for
# over a second on a loaded machine (the test stacks' blocking detector failed the test).

__all__ = ["SettingsProvider", "after_commit", "consumes", "endpoint", "service_base"]


class SettingsProvider(DependencyProvider):
    """Loads the service's settings once, when the container starts (a bad value stops the start
    with a clear error instead of failing the first request), and injects the same frozen object
    into every worker."""

    def __init__(self, load: Callable[[], Any]):
        self.load = load
        self.value: Any = None

    def setup(self):
        # nameko sets providers up in no set order: a service's own provider that needs the
        # settings in its setup (conversations' inbox seeder) calls this first; loaded once
        if self.value is None:
            self.value = self.load()

    def get_dependency(self, worker_ctx):
        return self.value

    @classmethod
    def of(cls, container) -> Any:
        """The settings of `container`, for another provider: loaded now if that provider's setup
        runs first (nameko sets providers up in no set order); loaded once either way."""
        provider = next(d for d in container.dependencies if isinstance(d, cls))
        provider.setup()
        return provider.value


def _no_settings() -> None:
    return None


class ObservabilityProvider(DependencyProvider):
    """Health (live/ready) and metrics of the service process: a heartbeat green thread, a watch
    on every AMQP consumer, the scrape-time outbox/database gauges, and the optional metrics port
    (`MAILROOM_METRICS_PORT`: /metrics, /health/live, /health/ready served without a nameko worker,
    so a pod whose workers are all busy still answers its probes). Injects the Health object."""

    def __init__(self, service: str, outbox_table: Table | None):
        self.service = service
        self.outbox_table = outbox_table
        self.health: observability.Health | None = None
        self.collector: observability.ServiceCollector | None = None
        self.port = 0
        self._server = None
        self._socket = None
        self._profile: observability.CpuProfile | None = None

    def setup(self):
        observability.SERVICE_NAME = self.service
        # MAILROOM_CPROFILE_DIR (bench/run.py --cprofile): the event loop's CPU, profiled from here
        self._profile = observability.CpuProfile(self.service).start()
        databases = [dep for dep in self.container.dependencies if isinstance(dep, DatabaseProvider)]

        def database():
            return databases[0].database if databases else None

        consumers = [ext for ext in self.container.subextensions if isinstance(ext, QueueConsumer)]
        migrations_dir = Path(inspect.getfile(self.container.service_cls)).parent / "migrations"
        # Health reads the migration scripts (alembic loads each as a module): over a second on a busy
        # machine, so in a native thread while the event loop keeps turning
        self.health = eventlet.tpool.execute(
            observability.Health, self.service, database, migrations_dir, consumers,
            live_max_lag=config.env_float("MAILROOM_LIVE_MAX_LAG_SECONDS", 10.0, minimum=1.0),
            consumer_stale_after=config.env_float("MAILROOM_READY_CONSUMER_STALE_SECONDS", 10.0, minimum=2.0))
        self.collector = observability.ServiceCollector(self.service, database, self.outbox_table)
        observability.REGISTRY.register(self.collector)
        self.port = config.env_int("MAILROOM_METRICS_PORT", 0, minimum=0)

    def start(self):
        self.container.spawn_managed_thread(self.health.beat_forever, identifier=f"{self.service}.heartbeat")
        if self.port:
            self._socket = eventlet.listen(("0.0.0.0", self.port))  # noqa: S104 - the pod's metrics port
            self._server = eventlet.spawn(eventlet.wsgi.server, self._socket,
                                          observability.metrics_wsgi_app(self.health),
                                          log=logging.getLogger("mailroom.metrics_server"), log_output=False)
            log.info("metrics and probes on :%d (/metrics, /health/live, /health/ready)", self.port)

    def stop(self):
        if self._profile is not None:
            self._profile.stop()
            self._profile = None
        if self.collector is not None:
            with contextlib.suppress(KeyError):  # never registered, or already gone
                observability.REGISTRY.unregister(self.collector)
            self.collector = None
        if self._server is not None:
            self._server.kill()
            self._server = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        return self.health


def _json_answer(status: int, document: dict) -> Response:
    return Response(json.dumps(document), status=status, mimetype="application/json")


def service_base(service: str, outbox_table: Table, processed_table: Table,
                 load_settings: Callable[[], Any] = _no_settings, *,
                 publishes: Mapping[str, int] | None = None) -> type:
    """The base class of a service: its providers and its outbox/processed-events helpers.
    `publishes` names the version of each event the service publishes (event name → version)."""
    outbox = Outbox(outbox_table, publishes=publishes)
    processed = ProcessedEvents(processed_table)

    class ServiceBase:
        topology = TopologyProvider()
        db = DatabaseProvider(service)
        relay = OutboxRelayProvider(service, lambda: outbox_table)
        settings = SettingsProvider(load_settings)
        observability = ObservabilityProvider(service, outbox_table)

        @http("GET", "/health/live")
        def health_live(self, request):
            """200 while the process's event loop turns (no I/O): the liveness probe."""
            return _json_answer(*self.observability.live())

        @http("GET", "/health/ready")
        def health_ready(self, request):
            """200 when the database answers at the expected schema revision and every consumer
            is attached: the readiness and startup probes."""
            return _json_answer(*self.observability.ready())

        @http("GET", "/metrics")
        def prometheus_metrics(self, request):
            body, content_type = observability.metrics_payload()
            return Response(body, status=200, headers={"Content-Type": content_type})

        def authenticated_as(self, request, principal: Principal) -> Principal:
            """Called once per authenticated request; a service may override it (conversations
            remembers users it has seen)."""
            return principal

    ServiceBase.outbox = outbox
    ServiceBase.processed = processed
    ServiceBase.service_name = service
    ServiceBase.__name__ = ServiceBase.__qualname__ = f"{service.capitalize()}ServiceBase"
    return ServiceBase


def consumes(source: str, event_name: str, *, handler_name: str | None = None,
             when: Callable[[dict], bool] | None = None):
    """Declare an event handler: `method(self, session, data, envelope)`.

    `data` is the event's data read tolerantly with the schema of the version named by the
    envelope's `type` (unknown fields dropped; a missing required field dead-letters the message
    at once). The method runs exactly once per event (`processed_events`, keyed by `handler_name`,
    by default the method's name), inside a transaction shared with the other events that arrived
    meanwhile (group commit). Whatever it records in `self.outbox` is published after the commit.
    Work that must happen only after the commit goes through `after_commit(session, fn)`.

    `when(data)`, if given, says whether the event concerns this handler at all: an event it
    refuses is acknowledged without a transaction (outbound skips conversations created as spam).
    It runs after the broker stored and delivered the event: a consumer that wants a small
    fraction of an event's messages is better served by an event of its own (#16: bounces come
    as delivery_report_received, not filtered out of every message_received)."""

    def decorate(method):
        name = handler_name or method.__name__
        label = method.__name__  # the handler label of its metrics: the queue is named after the method

        @functools.wraps(method)
        def handle(self, envelope):
            service = getattr(self, "service_name", None) or getattr(self, "name", "unknown")
            # the events this handler publishes continue the trace of the one it handles
            traceparent = tracing.for_envelope(envelope)
            context = {**observability.envelope_fields(envelope), "trace_id": tracing.trace_id(traceparent)}
            started = time.perf_counter()
            outcome = "failed"
            with observability.log_context(handler=label, **context), tracing.within(traceparent):
                try:
                    data = parse_envelope(envelope, event_name)
                    if when is not None and not when(data):
                        outcome = "skipped"
                        return

                    def change(session):
                        # group commit may run it in another event's green thread: name this event
                        # (and its trace) there
                        with observability.log_context(handler=label, **context), tracing.within(traceparent):
                            return method(self, session, data, envelope)

                    ran = self.processed.run_once(self.db, envelope, name, change)
                    outcome = "processed" if ran is not False else "duplicate"
                except Exception as exc:
                    observability.HANDLER_FAILURES.labels(service, label, event_name, type(exc).__name__).inc()
                    raise
                finally:
                    observability.HANDLER_EVENTS.labels(service, label, event_name, outcome).inc()
                    observability.HANDLER_DURATION.labels(service, label, event_name).observe(
                        time.perf_counter() - started)
            self.relay.wake()

        return ObservedEventHandler.decorator(source, event_name)(handle)

    return decorate


def _refuse_nul_characters(request, path_params: dict) -> None:
    """A NUL character in a path or query parameter is a 400: PostgreSQL refuses it in any text
    (schemathesis found `GET /api/outbound/templates?inbox_id=%00` answering 500)."""
    named = [(f"query parameter {name!r}", value) for name, value in request.args.items(multi=True)]
    named += [(f"path parameter {name!r}", value) for name, value in path_params.items()]
    for where, value in named:
        if isinstance(value, str) and "\x00" in value:
            raise HttpError(f"{where} contains a NUL character")


def endpoint(method: str, url: str, *, auth: bool = True, **http_options):
    """Declare an HTTP entrypoint answering JSON. With `auth` (the default) the caller must send a
    valid bearer token and is found in `request.principal`; without one the answer is 401."""

    def decorate(func):
        @functools.wraps(func)
        def with_principal(self, request, *args, **kwargs):
            if auth:
                request.principal = self.authenticated_as(request, authenticate(request))
            _refuse_nul_characters(request, kwargs)
            return func(self, request, *args, **kwargs)

        answer = json_endpoint(with_principal)

        @functools.wraps(answer)
        def observed(self, request, *args, **kwargs):
            started = time.perf_counter()
            status = 500
            # the events a request publishes continue its caller's trace (a valid `traceparent`
            # header) or start one of their own
            caller = request.headers.get("traceparent")
            traceparent = tracing.child_of(caller) if tracing.parse(caller) else tracing.new_traceparent()
            try:
                with observability.log_context(http_method=method, route=url, trace_id=tracing.trace_id(traceparent)), \
                        tracing.within(traceparent):
                    response = answer(self, request, *args, **kwargs)
                status = getattr(response, "status_code", 200)
                return response
            finally:
                service = getattr(self, "service_name", None) or getattr(self, "name", "unknown")
                observability.HTTP_DURATION.labels(service, method, url, str(status)).observe(
                    time.perf_counter() - started)

        return http(method, url, **http_options)(observed)

    return decorate


class ObservedQueueConsumer(DeadLetteringQueueConsumer):
    """Counts the undecodable messages it parks in a dead-letter queue."""

    def _dead_letter_undecodable(self, provider, message, exc):
        super()._dead_letter_undecodable(provider, message, exc)
        observability.HANDLER_DEAD_LETTERED.labels(self.container.service_name, provider.method_name,
                                                   provider.event_type, "undecodable").inc()


class ObservedEventHandler(RetryingEventHandler):
    """RetryingEventHandler that counts what became of a failed message once the broker confirmed
    its republish: retried (to a delay queue) or dead-lettered (permanent error, or retries used up).
    A republish that failed is requeued and counted as nothing yet."""

    queue_consumer = ObservedQueueConsumer()

    def handle_message_processed(self, message, result=None, exc_info=None):
        # the "retrying"/"dead-lettering" log lines name the event too
        payload = message.payload if exc_info is not None else None
        with observability.log_context(handler=self.method_name, **observability.envelope_fields(payload)):
            super().handle_message_processed(message, result, exc_info)

    def _reroute_failed(self, message, exc_info) -> str:
        outcome = super()._reroute_failed(message, exc_info)
        labels = (self.container.service_name, self.method_name, self.event_type)
        if outcome == "retried":
            observability.HANDLER_RETRIED.labels(*labels).inc()
        else:
            observability.HANDLER_DEAD_LETTERED.labels(*labels, outcome).inc()
        return outcome


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once `session`'s transaction has committed (never after a rollback): for
    in-process caches that must not be refreshed before the change is visible."""
    event.listen(session, "after_commit", lambda _session: callback(), once=True)
