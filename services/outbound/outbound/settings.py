"""The outbound service's settings: one frozen `Settings`, read from the environment by `load()`
(once per process, through the kit's SettingsProvider; a bad value stops the start with the
variable's name). The README's configuration table lists every variable.

SMTP relay: `OUTBOUND_SMTP_HOST/PORT/USERNAME/PASSWORD/STARTTLS/SSL/TIMEOUT` is the default;
`OUTBOUND_SMTP_RELAYS_FILE` may name a YAML file of per-From overrides (schemas.RelaysFileSchema):

    relays:
      - from: sales@example.com        # an address, or "@example.com" for a whole domain
        host: smtp.example.com
        port: 587
        starttls: true
        username: sales@example.com
        password_env: SALES_SMTP_PASSWORD   # the secret stays in the environment

The file never holds a password (a `password` key is refused): it names the environment variable
that holds it. Passwords are never logged.

Chat replies (docs/channels.md) are POSTed to the connector's webhook URL, signed with the
channel's secret, which conversations sealed with `MAILROOM_CONNECTOR_SECRET_KEY` (the same key
here opens it); `MAILROOM_CONNECTOR_ALLOW_PRIVATE_TARGETS` lets them reach private addresses
(`make run`, tests). They are retried like emails (OUTBOUND_MAX_ATTEMPTS, OUTBOUND_RETRY_*).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mailroom_shared import config
from outbound.schemas import RelaysFileSchema

RELAYS_FILE = "OUTBOUND_SMTP_RELAYS_FILE"


@dataclass(frozen=True)
class SmtpRelay:
    host: str = "127.0.0.1"
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    ssl: bool = False
    timeout: float = 60.0

    @property
    def name(self) -> str:
        """How a delivery attempt names the relay it used."""
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:  # never print the password
        return f"SmtpRelay({self.host}:{self.port}, user={self.username!r}, starttls={self.starttls}, ssl={self.ssl})"


@dataclass(frozen=True)
class Settings:
    message_id_domain: str = "mailroom.local"
    origin: str = "mailroom"
    reply_to_token: bool = True  # Reply-To: support+<token>@… on replies and composes
    template_on_missing: str = "error"
    max_attachment_bytes: int = 10 * 1024 * 1024
    max_total_attachment_bytes: int = 20 * 1024 * 1024
    max_attachments: int = 50
    max_recipients: int = 100
    max_attempts: int = 8
    retry_base_seconds: float = 60.0
    retry_max_seconds: float = 3600.0
    send_lease_seconds: float = 300.0
    poll_seconds: float = 1.0
    rpc_timeout_seconds: float = 10.0
    delivery_concurrency: int = 4  # SMTP sends in flight per process
    connector_secret_key: str | None = field(default=None, repr=False)
    allow_private_connector_targets: bool = False
    smtp: SmtpRelay = SmtpRelay()  # the default relay
    relays: Mapping[str, SmtpRelay] = field(default_factory=lambda: MappingProxyType({}))  # From / @domain → relay

    def relay_for(self, from_email: str) -> SmtpRelay:
        """The relay for a From address: its own, else its domain's, else the default."""
        email = from_email.lower()
        return self.relays.get(email) or self.relays.get("@" + email.rpartition("@")[2]) or self.smtp


def load() -> Settings:
    smtp = SmtpRelay(
        host=config.env_str("OUTBOUND_SMTP_HOST", "127.0.0.1"),
        port=config.env_int("OUTBOUND_SMTP_PORT", 25),
        username=config.env_str("OUTBOUND_SMTP_USERNAME"),
        password=config.env_str("OUTBOUND_SMTP_PASSWORD"),
        starttls=config.env_bool("OUTBOUND_SMTP_STARTTLS", False),
        ssl=config.env_bool("OUTBOUND_SMTP_SSL", False),
        timeout=config.env_float("OUTBOUND_SMTP_TIMEOUT", 60.0),
    )
    return Settings(
        message_id_domain=_message_id_domain(),
        origin=config.env_str("OUTBOUND_ORIGIN", "mailroom"),
        reply_to_token=config.env_bool("OUTBOUND_REPLY_TO_TOKEN", True),
        template_on_missing=config.env_choice("OUTBOUND_TEMPLATE_MISSING", ("error", "empty"), "error"),
        max_attachment_bytes=config.env_int("OUTBOUND_MAX_ATTACHMENT_BYTES", 10 * 1024 * 1024),
        max_total_attachment_bytes=config.env_int("OUTBOUND_MAX_TOTAL_ATTACHMENT_BYTES", 20 * 1024 * 1024),
        max_attachments=config.env_int("OUTBOUND_MAX_ATTACHMENTS", 50),
        max_recipients=config.env_int("OUTBOUND_MAX_RECIPIENTS", 100),
        max_attempts=config.env_int("OUTBOUND_MAX_ATTEMPTS", 8),
        retry_base_seconds=config.env_float("OUTBOUND_RETRY_BASE_SECONDS", 60.0),
        retry_max_seconds=config.env_float("OUTBOUND_RETRY_MAX_SECONDS", 3600.0),
        send_lease_seconds=config.env_float("OUTBOUND_SEND_LEASE_SECONDS", 300.0),
        poll_seconds=config.env_float("OUTBOUND_POLL_SECONDS", 1.0),
        rpc_timeout_seconds=config.env_float("OUTBOUND_RPC_TIMEOUT_SECONDS", 10.0),
        delivery_concurrency=max(1, config.env_int("OUTBOUND_DELIVERY_CONCURRENCY", 4)),
        connector_secret_key=config.env_str("MAILROOM_CONNECTOR_SECRET_KEY") or None,
        allow_private_connector_targets=config.env_bool("MAILROOM_CONNECTOR_ALLOW_PRIVATE_TARGETS", False),
        smtp=smtp,
        relays=MappingProxyType(_relays(smtp)),
    )


def _message_id_domain() -> str:
    domains = config.env_list("MAILROOM_MESSAGE_ID_DOMAIN", ("mailroom.local",))
    if not domains:
        raise config.ConfigError("MAILROOM_MESSAGE_ID_DOMAIN must name a domain")
    return domains[0]


def _relays(default: SmtpRelay) -> dict[str, SmtpRelay]:
    """From address (or `@domain`) → relay, from OUTBOUND_SMTP_RELAYS_FILE. An entry takes the
    default relay's port and timeout unless it gives its own; nothing else is inherited."""
    path = config.env_path(RELAYS_FILE)
    if path is None:
        return {}
    document = config.load_yaml_file(RELAYS_FILE, path, RelaysFileSchema())
    result = {}
    for i, entry in enumerate(document["relays"] or []):
        password = None
        if entry.get("password_env"):
            password = config.env_secret(entry["password_env"], f"{RELAYS_FILE}: {path}: relays[{i}].password_env")
        result[entry["from"].strip().lower()] = SmtpRelay(
            host=entry["host"], port=entry.get("port", default.port), username=entry.get("username"),
            password=password, starttls=entry["starttls"], ssl=entry["ssl"],
            timeout=entry.get("timeout", default.timeout))
    return result
