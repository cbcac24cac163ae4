"""The generated contract documents are up to date with the code (run `make docs` if not), and
they describe every event and every HTTP route."""

from pathlib import Path

import yaml

from mailroom_cli.docs import asyncapi, openapi, render
from mailroom_shared.events.catalogue import CATALOGUE

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_asyncapi_document_is_generated_from_the_catalogue():
    assert (DOCS / "events.asyncapi.yaml").read_text() == render(asyncapi()), "stale: run `make docs`"
    document = yaml.safe_load((DOCS / "events.asyncapi.yaml").read_text())
    assert set(document["components"]["messages"]) == {f"{name}.v{version}" for name, version in CATALOGUE}
    for (name, _version), spec in CATALOGUE.items():
        channel = document["channels"][f"{spec.exchange}/{name}"]
        assert channel["bindings"]["amqp"]["exchange"]["name"] == spec.exchange


def test_openapi_document_is_generated_from_the_services():
    assert (DOCS / "openapi.yaml").read_text() == render(openapi()), "stale: run `make docs`"
    paths = yaml.safe_load((DOCS / "openapi.yaml").read_text())["paths"]
    for expected in ("/api/inboxes", "/api/inboxes/{inbox_id}/conversations", "/api/conversations/{conversation_id}",
                     "/api/contacts/{contact_id}/timeline", "/api/ingest/channels/{address}/messages"):
        assert expected in paths
