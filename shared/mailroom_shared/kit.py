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

The module imports nameko; domain code never imports it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from nameko.extensions import DependencyProvider
from nameko.web.handlers import http
from sqlalchemy import Table, event
from sqlalchemy.orm import Session

from mailroom_shared.auth import Principal, authenticate
from mailroom_shared.events.envelope import parse_envelope
from mailroom_shared.http import json_endpoint
from mailroom_shared.messaging.idempotency import ProcessedEvents
from mailroom_shared.messaging.nameko_adapters import (
    DatabaseProvider,
    OutboxRelayProvider,
    TopologyProvider,
    reliable_event_handler,
)
from mailroom_shared.messaging.outbox import Outbox

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
    refuses is acknowledged without a transaction (outbound reads every inbound message only to
    find the bounces among them)."""

    def decorate(method):
        name = handler_name or method.__name__

        @functools.wraps(method)
        def handle(self, envelope):
            data = parse_envelope(envelope, event_name)
            if when is not None and not when(data):
                return
            self.processed.run_once(self.db, envelope, name, lambda session: method(self, session, data, envelope))
            self.relay.wake()

        return reliable_event_handler(source, event_name)(handle)

    return decorate


def endpoint(method: str, url: str, *, auth: bool = True, **http_options):
    """Declare an HTTP entrypoint answering JSON. With `auth` (the default) the caller must send a
    valid bearer token and is found in `request.principal`; without one the answer is 401."""

    def decorate(func):
        @functools.wraps(func)
        def with_principal(self, request, *args, **kwargs):
            if auth:
                request.principal = self.authenticated_as(request, authenticate(request))
            return func(self, request, *args, **kwargs)

        return http(method, url, **http_options)(json_endpoint(with_principal))

    return decorate


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once `session`'s transaction has committed (never after a rollback): for
    in-process caches that must not be refreshed before the change is visible."""
    event.listen(session, "after_commit", lambda _session: callback(), once=True)
