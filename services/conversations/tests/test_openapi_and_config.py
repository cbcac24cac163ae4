"""The API description matches the real endpoints; the inboxes file is read as documented."""

import re

import pytest
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from conversations import openapi, settings


def service_routes():
    from nameko.web.handlers import HttpRequestHandler

    from conversations.service import ConversationsService

    routes = set()
    for attribute in vars(ConversationsService).values():
        for entrypoint in getattr(attribute, "nameko_entrypoints", ()):
            if isinstance(entrypoint, HttpRequestHandler) and entrypoint.url.startswith("/api/"):
                routes.add((entrypoint.method.lower(), re.sub(r"<string:(\w+)>", r"{\1}", entrypoint.url)))
    return routes


def test_every_endpoint_is_documented_with_its_schemas():
    spec = APISpec("mailroom", "0.1.0", "3.1.0", plugins=[MarshmallowPlugin()])
    openapi.register(spec)
    document = spec.to_dict()
    documented = {(method, path) for path, operations in document["paths"].items() for method in operations}
    assert documented == service_routes()
    listing = document["paths"]["/api/inboxes/{inbox_id}/conversations"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"inbox_id", "view", "cursor", "limit"}
    assert "html" in document["components"]["schemas"]["Message"]["properties"]


def test_inboxes_file_accepts_bare_addresses_and_rejects_bad_files(tmp_path, monkeypatch):
    good = tmp_path / "inboxes.yaml"
    good.write_text("inboxes:\n  - name: Sales\n    channels: [sales@example.com]\n")
    [inbox] = settings.load_inboxes_file(good)
    assert inbox["channels"] == [{"address": "sales@example.com", "name": None, "primary": False}]
    assert inbox["members"] == []

    bad = tmp_path / "bad.yaml"
    bad.write_text("inboxes:\n  - channels: []\n")
    with pytest.raises(settings.ConfigError, match="name"):
        settings.load_inboxes_file(bad)

    monkeypatch.setenv("CONVERSATIONS_INBOXES_FILE", "")
    assert settings.inboxes_file() is None
    monkeypatch.delenv("CONVERSATIONS_INBOXES_FILE")
    assert settings.inboxes_file() == settings.DEFAULT_INBOXES_FILE
    monkeypatch.setenv("CONVERSATIONS_REPLY_TO_CLOSED", "sometimes")
    with pytest.raises(settings.ConfigError):
        settings.reply_to_closed()
