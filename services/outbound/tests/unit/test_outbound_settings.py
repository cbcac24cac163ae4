"""settings.load(): defaults, per-From relays from the relays file, and a clear error naming the
variable (or the file's entry) for every bad value. No servers."""

import os

import pytest

from mailroom_shared.config import ConfigError
from outbound import settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("OUTBOUND_") or name in ("MAILROOM_MESSAGE_ID_DOMAIN", "SALES_SMTP_PASSWORD"):
            monkeypatch.delenv(name)


def relays_file(tmp_path, monkeypatch, text: str):
    path = tmp_path / "relays.yaml"
    path.write_text(text)
    monkeypatch.setenv("OUTBOUND_SMTP_RELAYS_FILE", str(path))
    return path


def test_defaults_without_any_variable():
    loaded = settings.load()
    assert loaded.message_id_domain == "mailroom.local" and loaded.template_on_missing == "error"
    assert loaded.max_attempts == 8 and loaded.delivery_concurrency == 4 and loaded.reply_to_token is True
    assert loaded.smtp == settings.SmtpRelay() and dict(loaded.relays) == {}
    assert loaded.relay_for("support@mailroom.test") is loaded.smtp


def test_values_are_read_and_the_first_message_id_domain_is_ours(monkeypatch):
    monkeypatch.setenv("MAILROOM_MESSAGE_ID_DOMAIN", "mail.example.com, old.example.com")
    monkeypatch.setenv("OUTBOUND_TEMPLATE_MISSING", "Empty")
    monkeypatch.setenv("OUTBOUND_SMTP_PORT", "587")
    monkeypatch.setenv("OUTBOUND_SMTP_STARTTLS", "yes")
    monkeypatch.setenv("OUTBOUND_DELIVERY_CONCURRENCY", "0")
    loaded = settings.load()
    assert loaded.message_id_domain == "mail.example.com" and loaded.template_on_missing == "empty"
    assert loaded.smtp.port == 587 and loaded.smtp.starttls is True
    assert loaded.delivery_concurrency == 1  # at least one send in flight


@pytest.mark.parametrize(("name", "value"), [
    ("OUTBOUND_MAX_ATTEMPTS", "many"),
    ("OUTBOUND_SMTP_PORT", "25a"),
    ("OUTBOUND_RETRY_BASE_SECONDS", "soon"),
    ("OUTBOUND_SMTP_STARTTLS", "maybe"),
    ("OUTBOUND_REPLY_TO_TOKEN", "sometimes"),
    ("OUTBOUND_TEMPLATE_MISSING", "ignore"),
    ("MAILROOM_MESSAGE_ID_DOMAIN", " , "),
])
def test_a_bad_value_is_an_error_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        settings.load()


def test_relays_file_gives_per_address_and_per_domain_relays_with_the_password_from_the_environment(
        tmp_path, monkeypatch):
    relays_file(tmp_path, monkeypatch, """
relays:
  - from: Sales@Example.com
    host: smtp.example.com
    port: 587
    starttls: true
    username: sales@example.com
    password_env: SALES_SMTP_PASSWORD
  - from: "@example.org"
    host: relay.example.org
""")
    monkeypatch.setenv("SALES_SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("OUTBOUND_SMTP_TIMEOUT", "20")
    loaded = settings.load()
    sales = loaded.relay_for("sales@EXAMPLE.com")
    assert (sales.host, sales.port, sales.starttls, sales.username, sales.password) == \
        ("smtp.example.com", 587, True, "sales@example.com", "s3cret")
    domain = loaded.relay_for("anyone@example.org")
    assert (domain.host, domain.port, domain.timeout, domain.password) == ("relay.example.org", 25, 20.0, None)
    assert loaded.relay_for("someone@else.example") is loaded.smtp
    assert "s3cret" not in repr(loaded) and "s3cret" not in repr(sales)


def test_a_relays_file_never_holds_a_password(tmp_path, monkeypatch):
    relays_file(tmp_path, monkeypatch, "relays:\n  - {from: a@example.com, host: smtp.example.com, password: x}\n")
    with pytest.raises(ConfigError, match="OUTBOUND_SMTP_RELAYS_FILE.*never holds a password"):
        settings.load()


def test_a_password_env_that_is_not_set_is_an_error(tmp_path, monkeypatch):
    relays_file(tmp_path, monkeypatch,
                "relays:\n  - {from: a@example.com, host: smtp.example.com, password_env: SALES_SMTP_PASSWORD}\n")
    with pytest.raises(ConfigError, match="relays\\[0\\].password_env names SALES_SMTP_PASSWORD"):
        settings.load()


@pytest.mark.parametrize(("text", "complaint"), [
    ("relays:\n  - {from: a@example.com}\n", "host"),
    ("relays:\n  - {host: smtp.example.com}\n", "from"),
    ("relays:\n  - {from: a@example.com, host: smtp.example.com, port: http}\n", "port"),
    ("relays:\n  - {from: a@example.com, host: smtp.example.com, hots: typo}\n", "hots"),
    ("- {from: a@example.com, host: smtp.example.com}\n", "Invalid input type"),
    ("relays: [unclosed\n", "not valid YAML"),
])
def test_a_bad_relays_file_is_an_error_naming_the_variable_and_the_problem(tmp_path, monkeypatch, text, complaint):
    relays_file(tmp_path, monkeypatch, text)
    with pytest.raises(ConfigError, match="OUTBOUND_SMTP_RELAYS_FILE") as error:
        settings.load()
    assert complaint in str(error.value)


def test_a_missing_relays_file_is_an_error_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("OUTBOUND_SMTP_RELAYS_FILE", str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="OUTBOUND_SMTP_RELAYS_FILE: cannot read"):
        settings.load()
