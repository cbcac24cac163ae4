"""settings.load: the environment read once, through the shared env helpers."""

import dataclasses

import pytest

from contacts.settings import Settings, load
from mailroom_shared.config import ConfigError


def test_defaults_when_nothing_is_set(monkeypatch):
    monkeypatch.delenv("CONTACTS_CREATE_FOR_AUTOMATED_SENDERS", raising=False)
    assert load() == Settings(create_for_automated_senders=False)


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("yes", True), ("false", False),
                                                 ("0", False), ("", False)])
def test_create_for_automated_senders_is_read_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("CONTACTS_CREATE_FOR_AUTOMATED_SENDERS", value)
    assert load().create_for_automated_senders is expected


def test_a_bad_value_is_a_clear_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("CONTACTS_CREATE_FOR_AUTOMATED_SENDERS", "sometimes")
    with pytest.raises(ConfigError, match="CONTACTS_CREATE_FOR_AUTOMATED_SENDERS.*'sometimes'"):
        load()


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().create_for_automated_senders = True
