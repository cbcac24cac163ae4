"""The contacts service's settings: one frozen object, loaded once per process from the
environment (through the kit's SettingsProvider) and passed to the use cases that need it."""

from __future__ import annotations

from dataclasses import dataclass

from mailroom_shared import config


@dataclass(frozen=True)
class Settings:
    # mailer-daemon / no-reply / notifications@… senders get a contact too (README: configuration)
    create_for_automated_senders: bool = False


def load() -> Settings:
    """The settings from the environment; config.ConfigError naming the variable on a bad value."""
    return Settings(
        create_for_automated_senders=config.env_bool("CONTACTS_CREATE_FOR_AUTOMATED_SENDERS", False),
    )
