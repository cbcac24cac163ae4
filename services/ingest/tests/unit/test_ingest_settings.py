"""settings.load: the environment read once through the shared env helpers, a bad value a clear
error naming its variable; the IMAP mailboxes file validated by schemas.MailboxSchema (a file
never holds a password: it names the variable that does)."""

import dataclasses
import os

import pytest
import yaml
from marshmallow import ValidationError

from ingest.schemas import MailboxSchema
from ingest.settings import Settings, load, team_mailbox_channels
from mailroom_shared.config import ConfigError

TEAM = {"id": "team", "host": "imap.example.com", "username": "team@example.com",
        "password_env": "TEAM_IMAP_PASSWORD", "channel_address": "support@example.com"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("INGEST_") or name in ("MAILROOM_MESSAGE_ID_DOMAIN", "TEAM_IMAP_PASSWORD",
                                                  "SALES_IMAP_PASSWORD"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MAILROOM_VAR_DIR", str(tmp_path / "var"))


@pytest.fixture
def mailboxes_file(monkeypatch, tmp_path):
    def write(document) -> None:
        path = tmp_path / "mailboxes.yaml"
        path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
        monkeypatch.setenv("INGEST_MAILBOXES_FILE", str(path))

    return write


def test_defaults_when_nothing_is_set(tmp_path):
    settings = load()
    assert settings.max_message_bytes == 25 * 1024 * 1024
    assert settings.own_message_id_domain == "mailroom.local"
    assert settings.spam_score_headers == {"X-Spam-Score": 5.0}
    assert (settings.limits.max_depth, settings.limits.max_parts, settings.limits.max_seconds) == (20, 500, 10.0)
    assert settings.blob_dir == (tmp_path / "var" / "blobs").resolve()
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_hostname) == ("127.0.0.1", 2525, "mailroom.local")
    assert settings.intake_poll_seconds is None  # chosen by database: NOTIFY on PostgreSQL
    assert (settings.intake_batch, settings.imap_poll_seconds, settings.mailboxes) == (16, 30.0, ())


def test_values_are_read_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("INGEST_MAX_MESSAGE_BYTES", "1000")
    monkeypatch.setenv("INGEST_INTERNAL_DOMAINS", "Acme.Example, corp.example")
    monkeypatch.setenv("INGEST_SPAM_SCORE_HEADERS", "X-Spam-Score=6,X-Rspamd-Score")
    monkeypatch.setenv("INGEST_BLOB_DIR", str(tmp_path / "blobs"))
    monkeypatch.setenv("INGEST_INTAKE_POLL_SECONDS", "600")
    monkeypatch.setenv("INGEST_INTAKE_BATCH", "0")
    settings = load()
    assert settings.max_message_bytes == 1000
    assert settings.internal_domains == {"acme.example", "corp.example"}
    assert settings.spam_score_headers == {"X-Spam-Score": 6.0, "X-Rspamd-Score": 5.0}
    assert settings.blob_dir == tmp_path / "blobs"
    assert settings.intake_poll_seconds == 600.0
    assert settings.intake_batch == 1  # at least one message per pass


@pytest.mark.parametrize(("name", "value", "message"), [
    ("INGEST_MAX_MESSAGE_BYTES", "25MB", "INGEST_MAX_MESSAGE_BYTES must be a whole number, not '25MB'"),
    ("INGEST_SMTP_PORT", "smtp", "INGEST_SMTP_PORT must be a whole number"),
    ("INGEST_MAX_PARSE_SECONDS", "ten", "INGEST_MAX_PARSE_SECONDS must be a number, not 'ten'"),
    ("INGEST_IMAP_POLL_SECONDS", "often", "INGEST_IMAP_POLL_SECONDS must be a number"),
    ("INGEST_INTAKE_POLL_SECONDS", "soon", "INGEST_INTAKE_POLL_SECONDS must be a number"),
    ("INGEST_SPAM_SCORE_HEADERS", "X-Spam-Score=high",
     "INGEST_SPAM_SCORE_HEADERS: the threshold of X-Spam-Score must be a number, not 'high'"),
])
def test_a_bad_value_is_a_clear_error_naming_the_variable(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load()
    assert message in str(error.value)


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().max_message_bytes = 1


# --- the mailboxes file ---------------------------------------------------------------------------

def test_a_mailbox_takes_intakes_size_limit(monkeypatch, mailboxes_file):
    """A mailbox that fetched what intake refuses would be stuck at that message on every poll."""
    mailboxes_file([TEAM])
    monkeypatch.setenv("TEAM_IMAP_PASSWORD", "s3cret")
    monkeypatch.setenv("INGEST_MAX_MESSAGE_BYTES", "1000000")
    [(team, _)] = load().mailboxes
    assert team.max_message_bytes == 1_000_000


def test_a_mailbox_gets_its_password_from_the_variable_the_file_names(monkeypatch, mailboxes_file):
    mailboxes_file([TEAM, {**TEAM, "id": "sales", "port": 143, "ssl": False, "starttls": True, "mark_seen": True}])
    monkeypatch.setenv("TEAM_IMAP_PASSWORD", "s3cret")
    (team, team_channel), (sales, _) = load().mailboxes
    assert (team.id, team.host, team.port, team.username, team.password) == (
        "team", "imap.example.com", 993, "team@example.com", "s3cret")
    assert (team.ssl, team.starttls, team.mark_seen, team.delete_after_fetch) == (True, False, False, False)
    assert team_channel == "support@example.com"
    assert (sales.port, sales.ssl, sales.starttls, sales.mark_seen) == (143, False, True, True)
    assert "s3cret" not in repr(load())


def test_a_password_in_the_file_is_refused(monkeypatch, mailboxes_file):
    mailboxes_file([{**TEAM, "password": "s3cret"}])
    monkeypatch.setenv("TEAM_IMAP_PASSWORD", "s3cret")
    with pytest.raises(ConfigError, match="INGEST_MAILBOXES_FILE.*never holds a password.*password_env") as error:
        load()
    assert "'s3cret'" not in str(error.value)


def test_a_password_variable_that_is_not_set_is_an_error(mailboxes_file):
    mailboxes_file([TEAM])
    with pytest.raises(ConfigError, match=r"INGEST_MAILBOXES_FILE.*\[0\]\.password_env names TEAM_IMAP_PASSWORD"):
        load()


@pytest.mark.parametrize(("entry", "complaint"), [
    ({k: v for k, v in TEAM.items() if k != "channel_address"}, "channel_address"),
    ({k: v for k, v in TEAM.items() if k != "password_env"}, "password_env"),
    ({**TEAM, "port": 70000}, "port"),
    ({**TEAM, "ssl": "maybe"}, "ssl"),
    ({**TEAM, "folder": "Archive"}, "folder"),  # not something the poller is given: refused, not ignored
])
def test_an_invalid_entry_is_an_error_naming_the_file_and_the_field(monkeypatch, mailboxes_file, entry, complaint):
    mailboxes_file([entry])
    monkeypatch.setenv("TEAM_IMAP_PASSWORD", "s3cret")
    with pytest.raises(ConfigError, match=f"INGEST_MAILBOXES_FILE.*mailboxes.yaml.*{complaint}"):
        load()


def test_ssl_and_starttls_together_are_refused(monkeypatch, mailboxes_file):
    mailboxes_file([{**TEAM, "ssl": True, "starttls": True}])
    monkeypatch.setenv("TEAM_IMAP_PASSWORD", "s3cret")
    with pytest.raises(ConfigError, match="INGEST_MAILBOXES_FILE.*choose ssl"):
        load()


@pytest.mark.parametrize(("document", "complaint"), [
    ("- id: [unclosed", "is not valid YAML"),
    ("id: team\nhost: imap.example.com\n", "Invalid input type"),  # a mapping, not a list of mailboxes
])
def test_a_file_that_is_not_a_list_of_mailboxes_is_an_error(mailboxes_file, document, complaint):
    mailboxes_file(document)
    with pytest.raises(ConfigError, match=f"INGEST_MAILBOXES_FILE.*{complaint}"):
        load()


def test_a_missing_file_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("INGEST_MAILBOXES_FILE", str(tmp_path / "nowhere.yaml"))
    with pytest.raises(ConfigError, match="INGEST_MAILBOXES_FILE: cannot read .*nowhere.yaml"):
        load()


def test_an_empty_file_means_no_mailboxes(mailboxes_file):
    mailboxes_file("")
    assert load().mailboxes == ()


def test_the_smtp_listener_and_explain_do_not_read_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("INGEST_MAILBOXES_FILE", str(tmp_path / "mounted-on-the-ingest-pod-only.yaml"))
    assert load(mailboxes=False).mailboxes == ()


def test_the_schema_fills_in_the_defaults():
    assert MailboxSchema().load(TEAM) == {**TEAM, "port": 993, "ssl": True, "starttls": False, "mark_seen": False,
                                          "delete_after_fetch": False, "team_mailbox": True}
    with pytest.raises(ValidationError) as error:
        MailboxSchema().load({"id": "", "password": "x"})
    assert set(error.value.messages) == {"password"}  # the password is named first, whatever else is wrong


# --- forward authentication and SMTP intake limits ---------------------------------------------------

def test_authentication_and_smtp_limits_default_to_safe_values():
    settings = load()
    assert settings.authentication.trusted_authserv_ids == frozenset()  # nothing trusted until configured
    assert settings.authentication.verify_dkim is False and settings.dns_resolver == ()
    assert (settings.smtp_max_connections_per_ip, settings.smtp_max_messages_per_minute_per_ip,
            settings.smtp_max_recipients) == (20, 120, 100)
    assert settings.smtp_limits_exempt == ("127.0.0.0/8", "::1")
    assert (settings.smtp_tls_cert, settings.smtp_tls_key, settings.smtp_require_tls) == (None, None, False)


def test_authentication_and_smtp_settings_are_read_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("INGEST_TRUSTED_AUTHSERV_IDS", "MX.Acme.example, mx.google.com")
    monkeypatch.setenv("INGEST_VERIFY_DKIM", "true")
    monkeypatch.setenv("INGEST_DNS_RESOLVER", "192.0.2.53, [2001:db8::53]:5353")
    monkeypatch.setenv("INGEST_DNS_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("INGEST_SMTP_MAX_CONNECTIONS_PER_IP", "5")
    monkeypatch.setenv("INGEST_SMTP_MAX_MESSAGES_PER_MINUTE_PER_IP", "0")
    monkeypatch.setenv("INGEST_SMTP_MAX_RECIPIENTS", "10")
    monkeypatch.setenv("INGEST_SMTP_LIMITS_EXEMPT", "")  # nobody exempt, not even this machine
    monkeypatch.setenv("INGEST_SMTP_TLS_CERT", str(tmp_path / "smtp.crt"))
    monkeypatch.setenv("INGEST_SMTP_TLS_KEY", str(tmp_path / "smtp.key"))
    monkeypatch.setenv("INGEST_SMTP_REQUIRE_TLS", "yes")
    settings = load()
    assert settings.authentication.trusted_authserv_ids == {"mx.acme.example", "mx.google.com"}
    assert settings.authentication.verify_dkim is True and settings.authentication.dns_timeout == 2.5
    assert settings.dns_resolver == ("192.0.2.53", "[2001:db8::53]:5353")
    assert (settings.smtp_max_connections_per_ip, settings.smtp_max_messages_per_minute_per_ip,
            settings.smtp_max_recipients, settings.smtp_limits_exempt) == (5, 0, 10, ())
    assert settings.smtp_tls_cert == tmp_path / "smtp.crt" and settings.smtp_require_tls is True


@pytest.mark.parametrize(("variables", "message"), [
    ({"INGEST_SMTP_TLS_CERT": "/etc/smtp.crt"}, "INGEST_SMTP_TLS_CERT and INGEST_SMTP_TLS_KEY are set together"),
    ({"INGEST_SMTP_REQUIRE_TLS": "true"}, "INGEST_SMTP_REQUIRE_TLS needs INGEST_SMTP_TLS_CERT"),
    ({"INGEST_VERIFY_DKIM": "sometimes"}, "INGEST_VERIFY_DKIM must be true or false"),
    ({"INGEST_VERIFY_DKIM": "true", "INGEST_DNS_TIMEOUT_SECONDS": "10"},
     "INGEST_DNS_TIMEOUT_SECONDS (10.0) must be below INGEST_MAX_PARSE_SECONDS (10.0)"),
    ({"INGEST_DNS_RESOLVER": "dns.example"}, "INGEST_DNS_RESOLVER: 'dns.example' is not a nameserver address"),
    ({"INGEST_SMTP_LIMITS_EXEMPT": "10.0.0.0/8, relay"}, "INGEST_SMTP_LIMITS_EXEMPT: 'relay' is not an IP"),
    ({"INGEST_SMTP_MAX_CONNECTIONS_PER_IP": "-1"}, "INGEST_SMTP_MAX_CONNECTIONS_PER_IP"),
    ({"INGEST_SMTP_MAX_RECIPIENTS": "0"}, "INGEST_SMTP_MAX_RECIPIENTS"),
])
def test_bad_authentication_and_smtp_settings_are_clear_errors(monkeypatch, variables, message):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load()
    assert message in str(error.value)


def test_configured_mailboxes_are_the_teams_own_unless_the_file_says_otherwise(monkeypatch, mailboxes_file):
    mailboxes_file([TEAM, {**TEAM, "id": "sales", "channel_address": "Sales@Example.com",
                           "password_env": "SALES_IMAP_PASSWORD"},
                    {**TEAM, "id": "partners", "channel_address": "sales@example.com", "team_mailbox": False,
                     "password_env": "SALES_IMAP_PASSWORD"}])
    monkeypatch.setenv("TEAM_IMAP_PASSWORD", "s3cret")
    monkeypatch.setenv("SALES_IMAP_PASSWORD", "s3cret")
    settings = load()
    assert [mailbox.team_mailbox for mailbox, _ in settings.mailboxes] == [True, True, False]
    # sales@ is also fed by a mailbox others fill: its IMAP mail cannot count as the team's own
    assert team_mailbox_channels(settings) == {"support@example.com"}
