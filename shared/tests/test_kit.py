"""The service kit without servers: @consumes runs a handler once per event, @endpoint answers
401 without a bearer token and hands the principal over with one, after_commit waits for the
commit, and settings are loaded once."""

import json
from unittest import mock

import pytest
from marshmallow import ValidationError
from nameko.testing.services import worker_factory
from sqlalchemy import MetaData, select, text
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from mailroom_shared import auth
from mailroom_shared.db import Database
from mailroom_shared.events.envelope import build_envelope
from mailroom_shared.kit import SettingsProvider, after_commit, consumes, endpoint, service_base
from mailroom_shared.messaging.idempotency import processed_events_table
from mailroom_shared.messaging.outbox import outbox_table

SECRET = "k" * 48
metadata = MetaData()
outbox = outbox_table(metadata)
processed_events = processed_events_table(metadata)
Base = service_base("kittest", outbox, processed_events, lambda: {"greeting": "hi"})


class KitService(Base):
    name = "kittest"

    def __init__(self):
        self.seen = []

    @consumes("contacts", "contact_created")
    def handle_contact_created(self, session, data, envelope):
        session.execute(text("SELECT 1"))  # the session is a live transaction
        self.seen.append((envelope["id"], data["contact_id"], self.settings["greeting"]))

    @consumes("contacts", "contact_created", handler_name="remember_contact")
    def other_handler(self, session, data, envelope):
        self.seen.append(("other", envelope["id"]))

    @endpoint("GET", "/api/kittest/me")
    def me(self, request):
        return {"user": request.principal.user_id}

    @endpoint("GET", "/health/kittest", auth=False)
    def health(self, request):
        return {"principal": getattr(request, "principal", None)}


def contact_created(contact_id="c1"):
    return build_envelope("contact_created", contact_id,
                          {"contact_id": contact_id, "emails": ["a@example.com"], "created_from": "api"})


@pytest.fixture
def database(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'kit.db'}")
    metadata.create_all(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def service(database):
    return worker_factory(KitService, db=database, settings={"greeting": "hi"})


def test_consumes_runs_a_handler_once_per_event_even_when_it_is_delivered_twice(service, database):
    first, second = contact_created("c1"), contact_created("c2")
    service.handle_contact_created(first)
    service.handle_contact_created(json.loads(json.dumps(first)))  # redelivered
    service.handle_contact_created(second)
    assert service.seen == [(first["id"], "c1", "hi"), (second["id"], "c2", "hi")]
    assert service.relay.wake.call_count == 3  # after every delivery: whatever it recorded is published
    with database.transaction() as session:
        rows = session.execute(select(processed_events.c.source, processed_events.c.event_id,
                                      processed_events.c.handler)).all()
    assert sorted(rows) == sorted([(first["source"], first["id"], "handle_contact_created"),
                                   (second["source"], second["id"], "handle_contact_created")])


def test_each_handler_of_an_event_runs_once_under_its_own_name(service, database):
    event = contact_created()
    service.handle_contact_created(event)
    service.other_handler(event)
    service.other_handler(event)
    assert service.seen == [(event["id"], "c1", "hi"), ("other", event["id"])]
    with database.transaction() as session:
        handlers = set(session.scalars(select(processed_events.c.handler)))
    assert handlers == {"handle_contact_created", "remember_contact"}


def test_an_event_its_schema_cannot_read_is_refused_before_the_handler_runs(service, database):
    event = contact_created()
    del event["data"]["contact_id"]
    for unreadable in (event, {"not": "an envelope"}):
        with pytest.raises(ValidationError):  # dead-lettered at once by the retrying handler
            service.handle_contact_created(unreadable)
    assert service.seen == []
    with database.transaction() as session:
        assert session.scalar(select(processed_events.c.event_id)) is None


def test_a_handler_that_fails_records_nothing_and_runs_again_on_redelivery(database):
    service = worker_factory(KitService, db=database)
    event = contact_created()
    with mock.patch.object(service, "seen") as seen:
        seen.append.side_effect = [RuntimeError("database hiccup"), None]
        with pytest.raises(RuntimeError):
            service.handle_contact_created(event)
        service.handle_contact_created(event)
        assert seen.append.call_count == 2
    with database.transaction() as session:
        assert session.scalar(select(processed_events.c.handler)) == "handle_contact_created"


def request(headers=None, path="/api/kittest/me"):
    return Request(EnvironBuilder(path=path, headers=headers or {}).get_environ())


@pytest.fixture
def secret(monkeypatch, tmp_path):
    for name in ("MAILROOM_JWKS_URL", "MAILROOM_JWT_ISSUER", "MAILROOM_JWT_AUDIENCE", "MAILROOM_JWT_ALGORITHMS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MAILROOM_JWT_SECRET", SECRET)
    monkeypatch.setenv("MAILROOM_VAR_DIR", str(tmp_path))


def test_endpoint_answers_401_without_a_bearer_token(service, secret):
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = service.me(request(headers))
        assert response.status_code == 401
        assert json.loads(response.get_data())["error"]["code"] == "unauthorized"


def test_endpoint_passes_the_verified_caller_in_request_principal(service, secret):
    token = auth.mint_token("agent-1", email="agent@example.com", teams=["t1"])
    response = service.me(request({"Authorization": f"Bearer {token}"}))
    assert response.status_code == 200
    assert json.loads(response.get_data()) == {"user": "agent-1"}


def test_a_service_sees_every_authenticated_principal(database, secret):
    seen = []

    class Remembering(KitService):
        def authenticated_as(self, request, principal):
            seen.append(principal.user_id)
            return auth.Principal("replaced")

        @endpoint("GET", "/api/kittest/who")
        def who(self, request):
            return {"user": request.principal.user_id}

    service = worker_factory(Remembering, db=database)
    token = auth.mint_token("agent-1")
    assert json.loads(service.who(request({"Authorization": f"Bearer {token}"})).get_data()) == {"user": "replaced"}
    assert seen == ["agent-1"]


def test_an_endpoint_without_auth_needs_no_token(service, secret):
    response = service.health(request(path="/health/kittest"))
    assert response.status_code == 200
    assert json.loads(response.get_data()) == {"principal": None}


def test_after_commit_runs_after_the_commit(database):
    calls = []
    with database.transaction() as session:
        session.execute(processed_events.insert().values(source="s", event_id="e1", handler="h"))
        after_commit(session, lambda: calls.append("committed"))
        assert calls == []
    assert calls == ["committed"]


def test_after_commit_never_runs_after_a_rollback(database):
    calls = []
    with pytest.raises(RuntimeError), database.transaction() as session:
        after_commit(session, lambda: calls.append("committed"))
        raise RuntimeError("the use case failed")
    with database.transaction() as session:
        session.execute(text("SELECT 1"))
    assert calls == []


def test_settings_are_loaded_once_when_the_container_starts():
    load = mock.Mock(return_value={"greeting": "hi"})
    provider = SettingsProvider(load)
    load.assert_not_called()
    provider.setup()
    assert provider.get_dependency(object()) is provider.get_dependency(object()) is load.return_value
    load.assert_called_once_with()


def test_the_base_declares_the_providers_and_one_outbox_and_processed_events_per_service():
    assert Base.outbox.table is outbox and Base.processed.table is processed_events
    assert KitService.outbox is Base.outbox and KitService.service_name == "kittest"
    other = service_base("kittest2", outbox, processed_events)
    assert other.processed is not Base.processed
    assert {"topology", "db", "relay", "settings"} <= set(vars(Base))
