"""The ingest service's settings: one frozen object read from the environment (see the README's
table) through the mailroom_shared.config helpers, loaded once per process — by the kit's
SettingsProvider in the service, by `main()` in the SMTP listener, by `mailroom explain`.

`INGEST_MAILBOXES_FILE` names a YAML list of IMAP mailboxes (schemas.MailboxSchema):

    - id: team
      host: imap.example.com
      port: 993
      username: team@example.com
      password_env: TEAM_IMAP_PASSWORD   # the NAME of the variable holding the password
      channel_address: support@example.com
      # optional: ssl (true), starttls, mark_seen, delete_after_fetch (false)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ingest.domain.model import ParseLimits
from ingest.imap_poller import MailboxConfig
from ingest.schemas import MailboxSchema
from mailroom_shared import config

MAILBOXES_FILE = "INGEST_MAILBOXES_FILE"
SPAM_SCORE_HEADERS = "INGEST_SPAM_SCORE_HEADERS"


@dataclass(frozen=True)
class Settings:
    """The defaults are the environment's defaults, except where `load()` says otherwise."""

    max_message_bytes: int = 25 * 1024 * 1024  # INGEST_MAX_MESSAGE_BYTES
    internal_domains: frozenset[str] = frozenset()  # INGEST_INTERNAL_DOMAINS: forwarders trusted
    own_message_id_domain: str | None = None  # MAILROOM_MESSAGE_ID_DOMAIN (load: mailroom.local)
    spam_score_headers: dict[str, float] = field(default_factory=dict)  # header → threshold
    limits: ParseLimits = field(default_factory=ParseLimits)  # INGEST_MAX_MIME_DEPTH/_PARTS, _PARSE_SECONDS
    html_preview_bytes: int = 100_000
    blob_dir: Path = Path("var/blobs")  # INGEST_BLOB_DIR, else <MAILROOM_VAR_DIR>/blobs
    smtp_host: str = "127.0.0.1"  # INGEST_SMTP_HOST: where the SMTP listener listens
    smtp_port: int = 2525  # INGEST_SMTP_PORT
    smtp_hostname: str = "mailroom.local"  # INGEST_SMTP_HOSTNAME: the name it greets with
    intake_poll_seconds: float | None = None  # INGEST_INTAKE_POLL_SECONDS; None: 1 s on PostgreSQL, else 0.1 s
    intake_batch: int = 16  # INGEST_INTAKE_BATCH: stored messages processed per transaction
    imap_poll_seconds: float = 30.0  # INGEST_IMAP_POLL_SECONDS
    parse_workers: int = 2  # INGEST_PARSE_WORKERS: parser processes (analysis never runs on the event loop)
    parse_memory_mb: int = 1024  # INGEST_PARSE_MEMORY_MB: address-space limit of each parser process
    max_attempts: int = 3  # INGEST_MAX_ATTEMPTS: a message failing this often is quarantined
    mailboxes: tuple[tuple[MailboxConfig, str], ...] = ()  # (mailbox, channel address) pairs


def load(*, mailboxes: bool = True) -> Settings:
    """The settings from the environment; config.ConfigError names the variable of a bad value.
    `mailboxes=False` leaves the mailboxes file unread: the SMTP listener and `mailroom explain`
    poll no mailbox (and the file and its passwords are only given to the ingest service)."""
    max_message_bytes = config.env_int("INGEST_MAX_MESSAGE_BYTES", 25 * 1024 * 1024, minimum=1)
    return Settings(
        max_message_bytes=max_message_bytes,
        internal_domains=frozenset(d.lower() for d in config.env_list("INGEST_INTERNAL_DOMAINS")),
        own_message_id_domain=_first("MAILROOM_MESSAGE_ID_DOMAIN", "mailroom.local"),
        spam_score_headers=_spam_score_headers(),
        limits=ParseLimits(max_depth=config.env_int("INGEST_MAX_MIME_DEPTH", 20),
                           max_parts=config.env_int("INGEST_MAX_MIME_PARTS", 500),
                           max_seconds=config.env_float("INGEST_MAX_PARSE_SECONDS", 10.0, minimum=0.1),
                           max_header_bytes=config.env_int("INGEST_MAX_HEADER_BYTES", 1024 * 1024, minimum=1024),
                           max_header_params=config.env_int("INGEST_MAX_HEADER_PARAMS", 1000, minimum=10)),
        blob_dir=config.env_path("INGEST_BLOB_DIR") or config.var_dir() / "blobs",
        smtp_host=_first("INGEST_SMTP_HOST", "127.0.0.1"),
        smtp_port=config.env_int("INGEST_SMTP_PORT", 2525),
        smtp_hostname=_first("INGEST_SMTP_HOSTNAME", "mailroom.local"),
        intake_poll_seconds=config.env_float("INGEST_INTAKE_POLL_SECONDS", None),  # unset: by database
        intake_batch=max(1, config.env_int("INGEST_INTAKE_BATCH", 16)),
        imap_poll_seconds=config.env_float("INGEST_IMAP_POLL_SECONDS", 30.0),
        parse_workers=config.env_int("INGEST_PARSE_WORKERS", 2, minimum=1),
        parse_memory_mb=config.env_int("INGEST_PARSE_MEMORY_MB", 1024, minimum=0),
        max_attempts=config.env_int("INGEST_MAX_ATTEMPTS", 3, minimum=1),
        mailboxes=_mailboxes(max_message_bytes) if mailboxes else (),
    )


def _first(name: str, default: str) -> str:
    """The first item of a comma-separated variable (as these variables were always read)."""
    return (config.env_list(name) or (default,))[0]


def _spam_score_headers() -> dict[str, float]:
    """`INGEST_SPAM_SCORE_HEADERS="X-Spam-Score=5,X-Rspamd-Score=6"`: a score at or above the
    threshold marks the message as spam (5.0 when a header names none)."""
    result = {}
    for item in config.env_list(SPAM_SCORE_HEADERS, ("X-Spam-Score=5.0",)):
        name, _, threshold = item.partition("=")
        try:
            result[name.strip()] = float(threshold or 5.0)
        except ValueError:
            raise config.ConfigError(f"{SPAM_SCORE_HEADERS}: the threshold of {name.strip()} must be a number, "
                                     f"not {threshold!r}") from None
    return result


def _mailboxes(max_message_bytes: int) -> tuple[tuple[MailboxConfig, str], ...]:
    """The IMAP mailboxes of INGEST_MAILBOXES_FILE. Their size limit is intake's: a larger one would
    fetch a message intake refuses on every poll, and the mailbox would be stuck at it."""
    path = config.env_path(MAILBOXES_FILE)
    if path is None:
        return ()
    entries = config.load_yaml_file(MAILBOXES_FILE, path, MailboxSchema(many=True))
    result = []
    for i, entry in enumerate(entries):
        password = config.env_secret(entry["password_env"], f"{MAILBOXES_FILE}: {path}: [{i}].password_env")
        try:
            mailbox = MailboxConfig(
                id=entry["id"], host=entry["host"], port=entry["port"], username=entry["username"],
                password=password, ssl=entry["ssl"], starttls=entry["starttls"], mark_seen=entry["mark_seen"],
                delete_after_fetch=entry["delete_after_fetch"], max_message_bytes=max_message_bytes)
        except ValueError as exc:  # e.g. both ssl and starttls
            raise config.ConfigError(f"{MAILBOXES_FILE}: {path}: {exc}") from exc
        result.append((mailbox, entry["channel_address"]))
    return tuple(result)
