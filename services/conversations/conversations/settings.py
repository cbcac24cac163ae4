"""The conversations service's settings: one frozen object, loaded once per process from the
environment (through the kit's SettingsProvider) and passed to what needs it.

- CONVERSATIONS_REPLY_TO_CLOSED (default `reopen`): a reply to a closed conversation reopens it;
  `new`: it starts a new conversation linked to the closed one.
- CONVERSATIONS_INBOXES_FILE (default: config/inboxes.yaml at the repository root, if present):
  the inboxes upserted at start; set but empty: none.
- MAILROOM_CONNECTOR_SECRET_KEY: the Fernet key that seals chat/form connector secrets at rest
  (outbound reads the same key to sign replies); without it channels can be neither created nor used.
- MAILROOM_CONNECTOR_ALLOW_PRIVATE_TARGETS (default false): let a connector's webhook URL name a
  private, loopback or link-local address (`make run` and the tests set it).
- CONVERSATIONS_CHANNEL_MAX_REQUEST_BYTES (default 8 MiB): the largest signed connector request
  (chat message or form submission, inline attachments included).
- CONVERSATIONS_DEFAULT_PHONE_REGION (default none): the region (ISO 3166 code, e.g. `DE`) of a
  call's phone number written without its country code; with none such a number is refused (422).

The inboxes file is read and validated (schemas.InboxesFileSchema) with the settings, so a bad
file stops the start with a clear error instead of running without the inboxes it expects. It
holds no secret.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml
from marshmallow import ValidationError

from conversations.domain import calls
from conversations.domain.placement import ReplyToClosed
from conversations.schemas import InboxesFileSchema
from mailroom_shared import config
from mailroom_shared.config import ConfigError

__all__ = ["DEFAULT_INBOXES_FILE", "ConfigError", "Settings", "load", "load_inboxes_file"]

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_INBOXES_FILE = REPO_ROOT / "config" / "inboxes.yaml"
INBOXES_FILE = "CONVERSATIONS_INBOXES_FILE"


@dataclass(frozen=True)
class Settings:
    reply_to_closed: ReplyToClosed = ReplyToClosed.REOPEN
    inboxes_file: Path | None = None  # None: seed no inboxes
    inboxes: tuple[dict, ...] = ()  # the inboxes file's entries, validated
    connector_secret_key: str | None = dataclasses.field(default=None, repr=False)
    allow_private_connector_targets: bool = False
    channel_max_request_bytes: int = 8 * 1024 * 1024
    default_phone_region: str | None = None  # calls (docs/calls.md): numbers without +country


def load() -> Settings:
    """The settings from the environment (and the inboxes file it names); config.ConfigError
    naming the variable or the file on a bad value."""
    reply_to_closed = config.env_choice("CONVERSATIONS_REPLY_TO_CLOSED", tuple(r.value for r in ReplyToClosed),
                                       ReplyToClosed.REOPEN.value)
    path = _inboxes_file()
    return Settings(reply_to_closed=ReplyToClosed(reply_to_closed), inboxes_file=path,
                    inboxes=tuple(load_inboxes_file(path)) if path is not None else (),
                    connector_secret_key=config.env_str("MAILROOM_CONNECTOR_SECRET_KEY") or None,
                    allow_private_connector_targets=config.env_bool("MAILROOM_CONNECTOR_ALLOW_PRIVATE_TARGETS", False),
                    channel_max_request_bytes=config.env_int("CONVERSATIONS_CHANNEL_MAX_REQUEST_BYTES",
                                                             8 * 1024 * 1024, minimum=1024),
                    default_phone_region=_phone_region())


def _phone_region() -> str | None:
    """CONVERSATIONS_DEFAULT_PHONE_REGION: a region phonenumbers knows (`DE`, `GB`, `US`…), or none."""
    region = (config.env_str("CONVERSATIONS_DEFAULT_PHONE_REGION") or "").strip().upper() or None
    if region is not None and not calls.is_region(region):
        raise ConfigError(f"CONVERSATIONS_DEFAULT_PHONE_REGION: {region!r} is not a region code (e.g. DE, GB, US)")
    return region


def _inboxes_file() -> Path | None:
    """CONVERSATIONS_INBOXES_FILE; set but empty (or blank): no seeding; unset: the repository's
    config/inboxes.yaml if it exists."""
    configured = config.env_str(INBOXES_FILE)  # None when unset or empty
    if configured is not None and configured.strip():
        return Path(configured)
    if config.env_list(INBOXES_FILE, None) is None:  # only an unset variable gives the default back
        return DEFAULT_INBOXES_FILE if DEFAULT_INBOXES_FILE.exists() else None
    return None


def load_inboxes_file(path: Path) -> list[dict]:
    """The inboxes to seed (a channel may be written as a bare address)."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read inboxes file {path}: {exc}") from exc
    try:
        return InboxesFileSchema().load(raw)["inboxes"]
    except ValidationError as exc:
        raise ConfigError(f"invalid inboxes file {path}: {exc.messages}") from exc
