"""settings.load: the environment and the inboxes file read once, through the shared env helpers."""

import dataclasses

import pytest

from conversations import settings
from conversations.domain.placement import ReplyToClosed
from mailroom_shared.config import ConfigError


@pytest.fixture
def no_file(monkeypatch):
    monkeypatch.setenv("CONVERSATIONS_INBOXES_FILE", "")
    monkeypatch.delenv("CONVERSATIONS_REPLY_TO_CLOSED", raising=False)


def test_defaults(no_file):
    assert settings.load() == settings.Settings(reply_to_closed=ReplyToClosed.REOPEN, inboxes_file=None, inboxes=())


@pytest.mark.parametrize(("value", "expected"), [("reopen", ReplyToClosed.REOPEN), ("new", ReplyToClosed.NEW),
                                                 (" NEW ", ReplyToClosed.NEW), ("", ReplyToClosed.REOPEN)])
def test_reply_to_closed_is_read_from_the_environment(no_file, monkeypatch, value, expected):
    monkeypatch.setenv("CONVERSATIONS_REPLY_TO_CLOSED", value)
    assert settings.load().reply_to_closed is expected


def test_a_bad_reply_to_closed_is_a_clear_error_naming_the_variable(no_file, monkeypatch):
    monkeypatch.setenv("CONVERSATIONS_REPLY_TO_CLOSED", "sometimes")
    with pytest.raises(ConfigError, match="CONVERSATIONS_REPLY_TO_CLOSED.*'sometimes'"):
        settings.load()


def test_the_inboxes_file_is_loaded_with_the_settings(monkeypatch, tmp_path):
    path = tmp_path / "inboxes.yaml"
    path.write_text("inboxes:\n  - name: Sales\n    key: sales\n    channels: [Sales@Example.com]\n")
    monkeypatch.setenv("CONVERSATIONS_INBOXES_FILE", str(path))
    loaded = settings.load()
    assert loaded.inboxes_file == path
    assert [(i["key"], i["channels"][0]["address"]) for i in loaded.inboxes] == [("sales", "Sales@Example.com")]


def test_a_blank_inboxes_file_variable_means_no_inboxes(monkeypatch):
    monkeypatch.setenv("CONVERSATIONS_INBOXES_FILE", "   ")
    assert settings.load().inboxes_file is None


@pytest.mark.parametrize(("content", "error"), [
    (None, "cannot read inboxes file"),  # missing
    ("inboxes: [unclosed", "cannot read inboxes file"),  # not YAML
    ("inboxes:\n  - name: Sales\n", "invalid inboxes file.*channels"),  # no channels
    ("inboxes:\n  - name: S\n    channels: [a@x.example]\n    password: secret\n", "invalid inboxes file.*password"),
    ("- just a list\n", "invalid inboxes file"),
])
def test_a_bad_inboxes_file_stops_the_start_with_a_clear_error(monkeypatch, tmp_path, content, error):
    path = tmp_path / "inboxes.yaml"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("CONVERSATIONS_INBOXES_FILE", str(path))
    with pytest.raises(ConfigError, match=error) as raised:
        settings.load()
    assert str(path) in str(raised.value)


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.Settings().reply_to_closed = ReplyToClosed.NEW
