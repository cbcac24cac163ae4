"""The notifier's settings: one frozen object, loaded once per process through the kit's
SettingsProvider. Nothing is configurable yet; Slack and webhook settings (secrets named by
environment variables, read with the mailroom_shared.config helpers) come with them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """Empty until Slack and webhooks are built."""


def load() -> Settings:
    """The settings from the environment (none are read yet)."""
    return Settings()
