"""The notifier skeleton without servers: its settings, its tables and its health answer."""

import dataclasses
import json

import pytest
from nameko.testing.services import worker_factory
from nameko.web.handlers import HttpRequestHandler
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from mailroom_shared.db import Database
from notifier import models, settings
from notifier.service import NotifierService


def get(path):
    return Request(EnvironBuilder(method="GET", path=path).get_environ())


def test_settings_are_one_frozen_object():
    loaded = settings.load()
    assert isinstance(loaded, settings.Settings)
    assert dataclasses.is_dataclass(loaded) and type(loaded).__dataclass_params__.frozen


def test_it_owns_the_reliability_tables_and_the_webhook_tables():
    assert set(models.Base.metadata.tables) == {"outbox", "processed_events", "webhook_subscriptions",
                                                "webhook_deliveries", "webhook_attempts", "webhook_sequences",
                                                "slack_connections", "slack_threads", "slack_posts", "slack_events",
                                                "erased_keys"}


def test_health_is_an_unauthenticated_get():
    routes = [(e.method, e.url) for e in NotifierService.health.nameko_entrypoints if isinstance(e, HttpRequestHandler)]
    assert routes == [("GET", "/health/notifier")]


def test_health_answers_ok_when_its_database_answers(tmp_path):
    service = worker_factory(NotifierService, db=Database(f"sqlite:///{tmp_path / 'notifier.db'}"))
    response = service.health(get("/health/notifier"))  # no bearer token needed
    assert response.status_code == 200
    assert json.loads(response.get_data()) == {"service": "notifier", "status": "ok", "database": "up"}


@pytest.mark.filterwarnings("ignore")
def test_health_answers_503_when_its_database_does_not(tmp_path):
    service = worker_factory(NotifierService, db=Database(f"sqlite:///{tmp_path / 'missing' / 'notifier.db'}"))
    response = service.health(get("/health/notifier"))
    assert response.status_code == 503
    assert json.loads(response.get_data())["database"] == "down"
