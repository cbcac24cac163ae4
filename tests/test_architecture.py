"""The architecture rules, checked: services never import one another, every event handler is
a dead-lettering one listed in the topology (so its queue exists before anything publishes and
a rename is caught), and every published event is in the catalogue."""

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from nameko.events import EventHandler

from mailroom_shared.config import SERVICE_NAMES
from mailroom_shared.events.catalogue import CATALOGUE
from mailroom_shared.messaging.nameko_adapters import RetryingEventHandler
from mailroom_shared.messaging.topology import SUBSCRIPTIONS, Subscription

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = ("domain", "handlers.py", "queries.py", "models.py", "migrations", "schemas.py", "settings.py",
            "service.py", "openapi.py")


def service_classes():
    # every service has a service module: one that fails to import fails here, loudly
    for name in SERVICE_NAMES:
        module = importlib.import_module(f"{name}.service")
        for value in vars(module).values():
            if isinstance(value, type) and getattr(value, "name", None) == name:
                yield value


def declared_handlers():
    for cls in service_classes():
        for method_name, method in inspect.getmembers(cls, callable):  # mixins included
            for entrypoint in getattr(method, "nameko_entrypoints", ()):
                if isinstance(entrypoint, EventHandler):
                    yield cls, method_name, entrypoint


def test_import_contracts_hold():
    result = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.split("Contracts:")[-1].replace("0 broken", "")


def test_every_event_handler_dead_letters_and_is_in_the_topology():
    declared = set()
    for cls, method_name, entrypoint in declared_handlers():
        assert isinstance(entrypoint, RetryingEventHandler), f"{cls.name}.{method_name} can lose messages"
        declared.add(Subscription(entrypoint.source_service, entrypoint.event_type, cls.name, method_name))
    assert declared == set(SUBSCRIPTIONS)


@pytest.mark.parametrize("subscription", SUBSCRIPTIONS, ids=lambda s: s.queue_name)
def test_subscriptions_are_to_catalogued_events(subscription):
    specs = [spec for (name, _version), spec in CATALOGUE.items() if name == subscription.event_type]
    assert specs and all(spec.producer == subscription.source for spec in specs)


def test_queue_names_are_stable():
    # Renaming a handler orphans its queue and the messages waiting in it: change this list only
    # together with a migration plan for the old queue.
    assert sorted(s.queue_name for s in SUBSCRIPTIONS) == [
        "evt-contacts-contact_created--conversations.handle_contact_created",
        "evt-contacts-contact_created--notifier.handle_contact_created",
        "evt-contacts-contact_erased--conversations.handle_contact_erased",
        "evt-contacts-contact_erased--ingest.handle_contact_erased",
        "evt-contacts-contact_erased--notifier.handle_contact_erased",
        "evt-contacts-contact_erased--outbound.handle_contact_erased",
        "evt-contacts-contact_updated--conversations.handle_contact_updated",
        "evt-contacts-contacts_merged--conversations.handle_contacts_merged",
        "evt-conversations-call_logged--contacts.handle_call_logged",
        "evt-conversations-channel_message_received--contacts.handle_channel_message_received",
        "evt-conversations-comment_added--notifier.handle_comment_added",
        "evt-conversations-contact_messages_erased--contacts.handle_contact_messages_erased",
        "evt-conversations-conversation_assigned--notifier.handle_conversation_assigned",
        "evt-conversations-conversation_closed--notifier.handle_conversation_closed",
        "evt-conversations-conversation_created--notifier.handle_conversation_created",
        "evt-conversations-conversation_created--outbound.handle_conversation_created",
        "evt-conversations-conversation_moved--notifier.handle_conversation_moved",
        "evt-conversations-conversation_reopened--notifier.handle_conversation_reopened",
        "evt-conversations-conversation_shared--contacts.handle_conversation_shared",
        "evt-conversations-conversation_spam_marked--contacts.handle_conversation_spam_marked",
        "evt-conversations-inbox_updated--contacts.handle_inbox_updated",
        "evt-conversations-inbox_updated--ingest.handle_inbox_updated",
        "evt-conversations-message_added--contacts.handle_message_added",
        "evt-conversations-message_added--notifier.handle_message_added",
        "evt-conversations-message_attribution_corrected--contacts.handle_message_attribution_corrected",
        "evt-ingest-contact_mail_erased--contacts.handle_contact_mail_erased",
        "evt-ingest-delivery_report_received--outbound.handle_delivery_report_received",
        "evt-ingest-message_quarantined--conversations.handle_message_quarantined",
        "evt-ingest-message_received--contacts.handle_message_received",
        "evt-ingest-message_received--conversations.handle_message_received",
        "evt-notifier-contact_notifications_erased--contacts.handle_contact_notifications_erased",
        "evt-outbound-chat_message_failed--conversations.handle_chat_message_failed",
        "evt-outbound-chat_message_queued--conversations.handle_chat_message_queued",
        "evt-outbound-chat_message_sent--contacts.handle_chat_message_sent",
        "evt-outbound-chat_message_sent--conversations.handle_chat_message_sent",
        "evt-outbound-contact_sent_mail_erased--contacts.handle_contact_sent_mail_erased",
        "evt-outbound-email_bounced--conversations.handle_email_bounced",
        "evt-outbound-email_bounced--notifier.handle_email_bounced",
        "evt-outbound-email_deferred--conversations.handle_email_deferred",
        "evt-outbound-email_failed--conversations.handle_email_failed",
        "evt-outbound-email_failed--notifier.handle_email_failed",
        "evt-outbound-email_queued--conversations.handle_email_queued",
        "evt-outbound-email_sent--contacts.handle_email_sent",
        "evt-outbound-email_sent--conversations.handle_email_sent",
        "evt-outbound-email_sent--notifier.handle_email_sent",
    ]


def test_only_the_services_that_read_every_inbound_message_take_message_received():
    """message_received carries up to 1 MB of text and HTML, persisted once per queue bound to it
    (#16): outbound, which only matches bounces, takes delivery_report_received instead. A retired
    subscription is in no service's topology, and its service (which may delete it) is named."""
    from mailroom_shared.messaging.topology import RETIRED_SUBSCRIPTIONS

    assert sorted(s.service for s in SUBSCRIPTIONS if s.event_type == "message_received") == [
        "contacts", "conversations"]
    assert [s.service for s in SUBSCRIPTIONS if s.event_type == "delivery_report_received"] == ["outbound"]
    assert not set(RETIRED_SUBSCRIPTIONS) & set(SUBSCRIPTIONS)
    assert not {s.queue_name for s in RETIRED_SUBSCRIPTIONS} & {s.queue_name for s in SUBSCRIPTIONS}
    assert {s.service for s in RETIRED_SUBSCRIPTIONS} <= set(SERVICE_NAMES)


def http_routes(cls):
    from nameko.web.handlers import HttpRequestHandler

    for _, method in inspect.getmembers(cls, callable):
        for entrypoint in getattr(method, "nameko_entrypoints", ()):
            if isinstance(entrypoint, HttpRequestHandler):
                path = entrypoint.url
                for converter in ("<string:", "<int:", "<"):
                    path = path.replace(converter, "{")
                yield entrypoint.method.lower(), path.replace(">", "}")


@pytest.mark.parametrize("cls", list(service_classes()), ids=lambda c: c.name)
def test_every_http_route_is_documented_and_routed_to_its_service(cls):
    from mailroom_shared.routing import service_for_path

    # the kit's operability routes (health, /metrics) are the same in every service: docs/operations.md
    routes = {(m, p) for m, p in http_routes(cls) if not p.startswith("/health/") and p != "/metrics"}
    module = importlib.import_module(f"{cls.name}.openapi")
    documented = {(op.method, op.path) if hasattr(op, "method") else (op[0], op[1]) for op in module.OPERATIONS}
    assert routes == documented
    for _, path in routes | {("get", f"/health/{cls.name}")}:
        assert service_for_path(path.replace("{", "x").replace("}", "")) == cls.name, path


def test_code_is_lint_clean():
    result = subprocess.run([str(Path(sys.executable).parent / "ruff"), "check", "--no-cache", "."],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_every_service_has_the_same_shape(service):
    """docs/architecture.md, "One service template": learning one service teaches all five."""
    package = REPO / "services" / service / service
    missing = [name for name in TEMPLATE if not (package / name).exists()]
    assert not missing, f"{service} lacks {missing}"
    assert (package / "domain" / "__init__.py").exists(), "domain/ is a package"
    assert not (package / "domain.py").exists() and not (package / "config.py").exists()
    for kind in ("unit", "integration"):
        assert (REPO / "services" / service / "tests" / kind).is_dir(), f"{service} has no tests/{kind}"


@pytest.mark.parametrize("cls", list(service_classes()), ids=lambda c: c.name)
def test_service_modules_hold_only_entrypoints_and_providers(cls):
    """service.py is thin: every method of the service class is an entrypoint (or the kit's
    authenticated_as hook), and none is long."""
    from nameko.extensions import Entrypoint

    for name, method in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("__") or name == "authenticated_as":
            continue
        lines = len(inspect.getsource(method).splitlines())
        if name.startswith("_"):  # a small private helper the entrypoints share (e.g. wake after a send)
            assert lines <= 12, f"{cls.name}.{name} has {lines} lines: the work belongs in handlers/queries"
            continue
        entrypoints = [e for e in getattr(method, "nameko_entrypoints", ()) if isinstance(e, Entrypoint)]
        assert entrypoints, f"{cls.name}.{name} is not an entrypoint: move it to handlers/queries"
        assert lines <= 25, f"{cls.name}.{name} has {lines} lines: the work belongs in handlers/queries"


def test_no_service_reads_the_environment_directly():
    """Settings come from settings.py through mailroom_shared.config's helpers, loaded once."""
    offenders = []
    for path in (REPO / "services").glob("*/*/**/*.py"):
        if "/tests/" in str(path) or "/migrations/" in str(path):
            continue
        text = path.read_text()
        if "os.environ" in text or "os.getenv" in text:
            offenders.append(str(path.relative_to(REPO)))
    assert not offenders, offenders
