"""A real service process (contacts, started as in production by mailroom-service) answers its
probes and shows its metrics, on its HTTP port and on its metrics port: live stays 200 while its
database is gone and ready turns 503 (then 200 again); handler, dead-letter, HTTP and outbox
metrics move when it processes events; its log is JSON lines that name the service and the event
and never hold a secret."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mailroom_shared.db import normalise_url
from mailroom_testing.publishing import publish_event, publish_raw
from mailroom_testing.specs import CONTACTS
from mailroom_testing.stack import free_port
from mailroom_testing.tokens import TEST_SECRET

pytestmark = pytest.mark.integration

HANDLER = {"service": "contacts", "handler": "handle_inbox_updated", "event": "inbox_updated"}


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def get_json(url: str) -> tuple[int, dict]:
    status, body = get(url)
    return status, json.loads(body)


def metrics(url: str) -> dict[tuple[str, frozenset], float]:
    status, body = get(url)
    assert status == 200
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def contacts(stack_factory, monkeypatch, postgres_admin):
    monkeypatch.setenv("MAILROOM_LOG_FORMAT", "json")  # the stack writes its nameko config from here
    port = free_port()
    stack = stack_factory([CONTACTS], extra_env={"MAILROOM_METRICS_PORT": str(port)})
    stack.metrics_url = f"http://127.0.0.1:{port}"
    stack.http_url = f"http://127.0.0.1:{stack.ports['contacts']}"
    return stack


def inbox_updated(name="Support"):
    return {"inbox_id": f"inbox-{uuid.uuid4().hex[:6]}", "name": name,
            "channel_addresses": ["support@mailroom.test"], "member_emails": []}


def test_probes_metrics_and_logs_of_a_running_service(contacts, postgres_admin):
    for base in (contacts.http_url, contacts.metrics_url):
        status, live = get_json(f"{base}/health/live")
        assert status == 200 and live["status"] == "ok", live
        status, ready = contacts.eventually(lambda b=base: (lambda r: r if r[0] == 200 else None)(
            get_json(f"{b}/health/ready")))
        checks = ready["checks"]
        assert checks["database"] == "up" and checks["schema"] == "current"
        assert checks["broker"] == "connected" and checks["consumers"] == checks["consumers_expected"] >= 1
    # the service's own health route still answers, and is timed
    assert contacts.get("/health/contacts")[0] == 200

    before = metrics(f"{contacts.metrics_url}/metrics")
    good = publish_event(contacts.amqp_uri, "inbox_updated", "inbox-1", inbox_updated())
    bad = publish_event(contacts.amqp_uri, "inbox_updated", "inbox-2", inbox_updated())
    publish_raw(contacts.amqp_uri, "conversations.events", "inbox_updated", json.dumps(
        {**bad, "id": str(uuid.uuid4()), "data": {"name": "no inbox id"}}).encode())

    def moved():
        now = metrics(f"{contacts.metrics_url}/metrics")
        processed = value(now, "mailroom_handler_events_total", **HANDLER, outcome="processed") - value(
            before, "mailroom_handler_events_total", **HANDLER, outcome="processed")
        dead = value(now, "mailroom_handler_dead_lettered_total", **HANDLER, reason="permanent") - value(
            before, "mailroom_handler_dead_lettered_total", **HANDLER, reason="permanent")
        return now if processed == 2 and dead == 1 else None

    now = contacts.eventually(moved, timeout=30)
    assert value(now, "mailroom_handler_duration_seconds_count", **HANDLER) >= 3
    assert value(now, "mailroom_http_request_duration_seconds_count", service="contacts", method="GET",
                 route="/health/contacts", status="200") >= 1
    assert value(now, "mailroom_database_up", service="contacts") == 1
    assert ("mailroom_outbox_pending_events", frozenset({"service": "contacts"}.items())) in now
    assert value(now, "mailroom_outbox_oldest_pending_age_seconds", service="contacts") >= 0
    assert value(now, "mailroom_ready", service="contacts") == 1
    # the HTTP port serves the same registry
    assert value(metrics(f"{contacts.http_url}/metrics"), "mailroom_handler_events_total", **HANDLER,
                 outcome="processed") >= 2

    # logs: JSON lines naming the service; the dead-lettered event named in its line; no secret
    lines = [json.loads(line) for line in contacts.log("contacts").splitlines() if line.startswith("{")]
    assert lines and all(line["service"] == "contacts" for line in lines)
    dead_lettered = [line for line in lines if "dead-lettering" in line["message"]]
    assert dead_lettered and dead_lettered[0]["event_type"] == "mailroom.inbox_updated.v1"
    assert dead_lettered[0]["handler"] == "handle_inbox_updated"
    log_text = contacts.log("contacts")
    assert TEST_SECRET not in log_text
    password = make_url(contacts.database_urls["contacts"]).password
    assert not password or f":{password}@" not in log_text
    assert good["id"]  # published and processed (counted above)

    # the database goes away: ready turns 503, live stays 200; it comes back: ready again
    name = make_url(contacts.database_urls["contacts"]).database
    admin = create_engine(normalise_url(postgres_admin.admin_url.render_as_string(hide_password=False)),
                          isolation_level="AUTOCOMMIT")
    away = f"{name}_away"

    def rename(old, new):
        with admin.connect() as connection:  # the service reconnects at once: terminate, then rename
            connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                               {"n": old})
            try:
                connection.execute(text(f'ALTER DATABASE "{old}" RENAME TO "{new}"'))
            except Exception:
                return False
        return True

    try:
        contacts.eventually(lambda: rename(name, away), timeout=30, interval=0.05)
        for base in (contacts.http_url, contacts.metrics_url):
            status, ready = contacts.eventually(lambda b=base: (lambda r: r if r[0] == 503 else None)(
                get_json(f"{b}/health/ready")), timeout=30)
            assert ready["checks"]["database"] == "down", ready
            assert get_json(f"{base}/health/live")[0] == 200
        assert value(metrics(f"{contacts.metrics_url}/metrics"), "mailroom_ready", service="contacts") == 0
    finally:
        contacts.eventually(lambda: rename(away, name) or not database_exists(admin, away), timeout=30)
        admin.dispose()
    contacts.eventually(lambda: get_json(f"{contacts.metrics_url}/health/ready")[0] == 200, timeout=30)


def database_exists(engine, name: str) -> bool:
    with engine.connect() as connection:
        return bool(connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}))


def test_ready_is_503_until_the_schema_is_migrated(stack_factory, make_database, amqp_uri, tmp_path):
    """A pod started before its migration Job finished stays out of the Service until it has."""
    from mailroom_testing.stack import Stack

    url = make_database("contacts")
    stack = Stack(services=[CONTACTS], amqp_uri=amqp_uri, database_urls={"contacts": url},
                  workdir=tmp_path / "unmigrated", extra_env={"MAILROOM_JWT_SECRET": TEST_SECRET})
    stack.migrate = lambda: None  # as if the Job had not run yet
    try:
        stack.start()
        status, ready = get_json(f"http://127.0.0.1:{stack.ports['contacts']}/health/ready")
        assert status == 503 and ready["checks"]["schema"] == "empty", ready
        assert get_json(f"http://127.0.0.1:{stack.ports['contacts']}/health/live")[0] == 200
        Stack.migrate(stack)
        stack.eventually(lambda: get_json(f"http://127.0.0.1:{stack.ports['contacts']}/health/ready")[0] == 200)
    finally:
        stack.stop()
