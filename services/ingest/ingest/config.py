"""The ingest service's configuration, from the environment (see the README's table)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from ingest.domain.model import ParseLimits
from ingest.imap_poller import MailboxConfig
from ingest.intake import IntakeSettings
from mailroom_shared import config


def intake_settings() -> IntakeSettings:
    return IntakeSettings(
        max_message_bytes=config.env_int("INGEST_MAX_MESSAGE_BYTES", 25 * 1024 * 1024),
        internal_domains=frozenset(d.lower() for d in config.env_list("INGEST_INTERNAL_DOMAINS")),
        own_message_id_domain=config.env_list("MAILROOM_MESSAGE_ID_DOMAIN", ("mailroom.local",))[0],
        spam_score_headers=spam_score_headers(),
        limits=ParseLimits(max_depth=config.env_int("INGEST_MAX_MIME_DEPTH", 20),
                           max_parts=config.env_int("INGEST_MAX_MIME_PARTS", 500),
                           max_seconds=config.env_float("INGEST_MAX_PARSE_SECONDS", 10.0)),
    )


def spam_score_headers() -> dict[str, float]:
    """`INGEST_SPAM_SCORE_HEADERS="X-Spam-Score=5,X-Rspamd-Score=6"`: a score at or above the
    threshold marks the message as spam."""
    result = {}
    for item in config.env_list("INGEST_SPAM_SCORE_HEADERS", ("X-Spam-Score=5.0",)):
        name, _, threshold = item.partition("=")
        result[name.strip()] = float(threshold or 5.0)
    return result


def blob_dir() -> Path:
    configured = config.env_list("INGEST_BLOB_DIR")
    return Path(configured[0]) if configured else config.var_dir() / "blobs"


def smtp_address() -> tuple[str, int]:
    return (config.env_list("INGEST_SMTP_HOST", ("127.0.0.1",))[0], config.env_int("INGEST_SMTP_PORT", 2525))


def mailboxes() -> list[tuple[MailboxConfig, str]]:
    """IMAP mailboxes from `INGEST_MAILBOXES_FILE` (YAML list). Each entry: id, host, port,
    username, password_env (the NAME of the variable holding the password), channel_address, and
    optional ssl/starttls/mark_seen/delete_after_fetch. Returns (config, channel address) pairs."""
    path = config.env_list("INGEST_MAILBOXES_FILE")
    if not path:
        return []
    entries = yaml.safe_load(Path(path[0]).read_text()) or []
    result = []
    for entry in entries:
        password = os.environ.get(entry.get("password_env", ""), entry.get("password", ""))
        result.append((MailboxConfig(
            id=entry["id"], host=entry["host"], port=int(entry.get("port", 993)), username=entry["username"],
            password=password, ssl=bool(entry.get("ssl", True)), starttls=bool(entry.get("starttls", False)),
            mark_seen=bool(entry.get("mark_seen", False)),
            delete_after_fetch=bool(entry.get("delete_after_fetch", False)),
        ), entry["channel_address"]))
    return result
