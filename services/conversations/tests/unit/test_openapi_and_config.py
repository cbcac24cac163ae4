"""The API description details; the inboxes file is read as documented."""

import pytest
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from conversations import openapi, settings


def test_endpoints_are_documented_with_their_parameters_and_schemas():
    # that every route is documented at all is checked for every service in tests/test_architecture.py
    spec = APISpec("mailroom", "0.1.0", "3.1.0", plugins=[MarshmallowPlugin()])
    openapi.register(spec)
    document = spec.to_dict()
    listing = document["paths"]["/api/inboxes/{inbox_id}/conversations"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"inbox_id", "view", "cursor", "limit", "q"}
    [q] = [p for p in listing["parameters"] if p["name"] == "q"]
    assert q["description"] and q["schema"]["maxLength"] == 200
    assert "422" in listing["responses"]
    summary = document["components"]["schemas"]["ConversationSummary"]["properties"]
    assert summary["unread"]["type"] == "boolean" and summary["unread"]["description"]
    counts = document["components"]["schemas"]["ViewCounts"]["properties"]
    assert counts["open"]["type"] == "integer" and counts["unread_counts"]["description"]
    for what in ("read", "unread"):
        operation = document["paths"][f"/api/conversations/{{conversation_id}}/{what}"]["post"]
        assert "204" in operation["responses"] and operation["summary"]
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
    assert settings.load().inboxes_file is None
    monkeypatch.delenv("CONVERSATIONS_INBOXES_FILE")
    assert settings.load().inboxes_file == settings.DEFAULT_INBOXES_FILE
    monkeypatch.setenv("CONVERSATIONS_REPLY_TO_CLOSED", "sometimes")
    with pytest.raises(settings.ConfigError):
        settings.load()
