"""The outbound service's configuration, from the environment (and an optional relays file).

SMTP relay: `OUTBOUND_SMTP_HOST/PORT/USERNAME/PASSWORD/STARTTLS/SSL/TIMEOUT` is the default;
`OUTBOUND_SMTP_RELAYS_FILE` may name a YAML file of per-From overrides:

    relays:
      - from: sales@example.com        # an address, or "@example.com" for a whole domain
        host: smtp.example.com
        port: 587
        starttls: true
        username: sales@example.com
        password_env: SALES_SMTP_PASSWORD   # the secret stays in the environment

Passwords are never read from the file and never logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from mailroom_shared import config


@dataclass(frozen=True)
class SmtpRelay:
    host: str = "127.0.0.1"
    port: int = 25
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False
    timeout: float = 60.0

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


def load() -> Settings:
    return Settings(
        message_id_domain=config.env_list("MAILROOM_MESSAGE_ID_DOMAIN", ("mailroom.local",))[0],
        origin=os.environ.get("OUTBOUND_ORIGIN", "mailroom"),
        reply_to_token=config.env_bool("OUTBOUND_REPLY_TO_TOKEN", True),
        template_on_missing=_choice("OUTBOUND_TEMPLATE_MISSING", "error", ("error", "empty")),
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
    )


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip().lower()
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def default_relay() -> SmtpRelay:
    return SmtpRelay(
        host=os.environ.get("OUTBOUND_SMTP_HOST", "127.0.0.1"),
        port=config.env_int("OUTBOUND_SMTP_PORT", 25),
        username=os.environ.get("OUTBOUND_SMTP_USERNAME") or None,
        password=os.environ.get("OUTBOUND_SMTP_PASSWORD") or None,
        starttls=config.env_bool("OUTBOUND_SMTP_STARTTLS", False),
        ssl=config.env_bool("OUTBOUND_SMTP_SSL", False),
        timeout=config.env_float("OUTBOUND_SMTP_TIMEOUT", 60.0),
    )


def relay_overrides() -> dict[str, SmtpRelay]:
    """From address (or `@domain`) → relay, from OUTBOUND_SMTP_RELAYS_FILE. A bad file stops the start."""
    path = os.environ.get("OUTBOUND_SMTP_RELAYS_FILE")
    if not path:
        return {}
    document = yaml.safe_load(Path(path).read_text()) or {}
    base = default_relay()
    result = {}
    for i, entry in enumerate(document.get("relays") or []):
        if not isinstance(entry, dict) or not entry.get("from") or not entry.get("host"):
            raise ValueError(f"{path}: relays[{i}] needs `from` and `host`")
        password = os.environ.get(entry["password_env"]) if entry.get("password_env") else None
        result[str(entry["from"]).strip().lower()] = replace(
            base, host=str(entry["host"]), port=int(entry.get("port", base.port)),
            username=entry.get("username"), password=password,
            starttls=bool(entry.get("starttls", False)), ssl=bool(entry.get("ssl", False)),
            timeout=float(entry.get("timeout", base.timeout)))
    return result


def relay_for(from_email: str, overrides: dict[str, SmtpRelay], default: SmtpRelay) -> SmtpRelay:
    email = from_email.lower()
    return overrides.get(email) or overrides.get("@" + email.rpartition("@")[2]) or default
