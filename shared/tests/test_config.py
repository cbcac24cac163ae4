"""The environment helpers: defaults when a variable is unset or empty, and a ConfigError that
names the variable when its value cannot be used."""

from pathlib import Path

import pytest

from mailroom_shared import config
from mailroom_shared.config import ConfigError

NAME = "MAILROOM_TEST_SETTING"


@pytest.fixture(autouse=True)
def unset(monkeypatch):
    monkeypatch.delenv(NAME, raising=False)


@pytest.mark.parametrize("value", [None, ""])
def test_unset_or_empty_gives_the_default(monkeypatch, value):
    if value is not None:
        monkeypatch.setenv(NAME, value)
    assert config.env_int(NAME, 7) == 7
    assert config.env_float(NAME, 1.5) == 1.5
    assert config.env_bool(NAME, True) is True and config.env_bool(NAME, False) is False
    assert config.env_choice(NAME, ("sqlite", "postgresql"), "sqlite") == "sqlite"
    assert config.env_str(NAME, "fallback") == "fallback"
    assert config.env_path(NAME, Path("/x")) == Path("/x")


def test_a_blank_boolean_gives_the_default(monkeypatch):
    monkeypatch.setenv(NAME, "  ")
    assert config.env_bool(NAME, True) is True


def test_values_are_read(monkeypatch):
    monkeypatch.setenv(NAME, "42")
    assert config.env_int(NAME, 7) == 42 and config.env_float(NAME, 1.5) == 42.0
    for text, expected in [("1", True), ("Yes", True), (" on ", True), ("false", False), ("OFF", False)]:
        monkeypatch.setenv(NAME, text)
        assert config.env_bool(NAME, not expected) is expected
    monkeypatch.setenv(NAME, " PostgreSQL ")
    assert config.env_choice(NAME, ("sqlite", "postgresql"), "sqlite") == "postgresql"
    monkeypatch.setenv(NAME, "a, b,,c ")
    assert config.env_list(NAME) == ("a", "b", "c")


@pytest.mark.parametrize(("value", "read", "says"), [
    ("ten", lambda: config.env_int(NAME, 7), "must be a whole number, not 'ten'"),
    ("1.5", lambda: config.env_int(NAME, 7), "must be a whole number"),
    ("0", lambda: config.env_int(NAME, 7, minimum=1), "must be at least 1, not 0"),
    ("fast", lambda: config.env_float(NAME, 1.0), "must be a number, not 'fast'"),
    ("-1", lambda: config.env_float(NAME, 1.0, minimum=0.0), "must be at least 0.0"),
    ("maybe", lambda: config.env_bool(NAME, False), "must be true or false, not 'maybe'"),
    ("mysql", lambda: config.env_choice(NAME, ("sqlite", "postgresql"), "sqlite"),
     "must be one of sqlite, postgresql, not 'mysql'"),
])
def test_a_bad_value_raises_a_config_error_naming_the_variable(monkeypatch, value, read, says):
    monkeypatch.setenv(NAME, value)
    with pytest.raises(ConfigError) as error:
        read()
    assert str(error.value).startswith(f"{NAME} ") and says in str(error.value)
    assert isinstance(error.value, ValueError)


def test_every_service_is_named_once():
    assert config.SERVICE_NAMES == ("ingest", "contacts", "conversations", "outbound", "notifier")
