"""The conversations service's configuration, read from the environment (and the inboxes file)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from marshmallow import ValidationError

from conversations.domain import ReplyToClosed
from conversations.schemas import InboxesFileSchema

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_INBOXES_FILE = REPO_ROOT / "config" / "inboxes.yaml"


class ConfigError(ValueError):
    pass


def reply_to_closed() -> ReplyToClosed:
    """CONVERSATIONS_REPLY_TO_CLOSED: `reopen` (default) or `new` (a new, linked conversation)."""
    raw = os.environ.get("CONVERSATIONS_REPLY_TO_CLOSED", "reopen").strip().lower()
    try:
        return ReplyToClosed(raw)
    except ValueError:
        raise ConfigError(f"CONVERSATIONS_REPLY_TO_CLOSED must be 'reopen' or 'new', not {raw!r}") from None


def inboxes_file() -> Path | None:
    """CONVERSATIONS_INBOXES_FILE (empty: no seeding), else config/inboxes.yaml if it exists."""
    configured = os.environ.get("CONVERSATIONS_INBOXES_FILE")
    if configured is not None:
        return Path(configured) if configured.strip() else None
    return DEFAULT_INBOXES_FILE if DEFAULT_INBOXES_FILE.exists() else None


def load_inboxes_file(path: Path) -> list[dict]:
    """The inboxes to seed. A channel may be written as a bare address; a bad file is an error
    that stops the service from starting (better than running without the inboxes it expects)."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read inboxes file {path}: {exc}") from exc
    if isinstance(raw, dict):
        for inbox in raw.get("inboxes") or []:
            if isinstance(inbox, dict) and isinstance(inbox.get("channels"), list):
                inbox["channels"] = [{"address": c} if isinstance(c, str) else c for c in inbox["channels"]]
    try:
        return InboxesFileSchema().load(raw)["inboxes"]
    except ValidationError as exc:
        raise ConfigError(f"invalid inboxes file {path}: {exc.messages}") from exc
