"""The architecture rules, checked: services never import one another, every event handler is
a dead-lettering one listed in the topology (so its queue exists before anything publishes and
a rename is caught), and every published event is in the catalogue."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from nameko.events import EventHandler

from mailroom_shared.events.catalogue import CATALOGUE
from mailroom_shared.messaging.nameko_adapters import RetryingEventHandler
from mailroom_shared.messaging.topology import SUBSCRIPTIONS, Subscription

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("ingest", "contacts", "conversations", "outbound", "notifier")


def service_classes():
    for name in SERVICES:
        try:
            module = importlib.import_module(f"{name}.service")
        except ModuleNotFoundError:
            continue
        for value in vars(module).values():
            if isinstance(value, type) and getattr(value, "name", None) == name:
                yield value


def declared_handlers():
    for cls in service_classes():
        for method_name, method in vars(cls).items():
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
    spec = CATALOGUE[subscription.event_type]
    assert spec.producer == subscription.source


def test_queue_names_are_stable():
    # Renaming a handler orphans its queue and the messages waiting in it: change this list only
    # together with a migration plan for the old queue.
    assert sorted(s.queue_name for s in SUBSCRIPTIONS) == [
        "evt-contacts-contact_created--conversations.handle_contact_created",
        "evt-conversations-inbox_updated--contacts.handle_inbox_updated",
        "evt-conversations-inbox_updated--ingest.handle_inbox_updated",
        "evt-conversations-message_added--contacts.handle_message_added",
        "evt-ingest-message_received--contacts.handle_message_received",
        "evt-ingest-message_received--conversations.handle_message_received",
    ]
