"""The notifier's settings: one frozen object, loaded once per process through the kit's
SettingsProvider, read from the environment only through the mailroom_shared.config helpers.

Webhooks for other systems:
  NOTIFIER_SECRET_KEY                     Fernet key (urlsafe base64, 32 bytes) that encrypts the
                                          webhook signing secrets at rest; without it webhooks
                                          cannot be created (503) nor delivered
  NOTIFIER_ALLOW_HTTP_WEBHOOKS            accept http:// URLs (default false: https only)
  NOTIFIER_WEBHOOK_ALLOW_PRIVATE          let webhooks reach private, loopback, link-local,
                                          multicast and reserved addresses (default false;
                                          `make run` sets it so local receivers work)
  NOTIFIER_WEBHOOK_RETRY_SCHEDULE         delays before each retry (default 5s,5m,30m,2h,5h,10h,10h)
  NOTIFIER_WEBHOOK_CONNECT_TIMEOUT_SECONDS / NOTIFIER_WEBHOOK_TIMEOUT_SECONDS  (5 / 15)
  NOTIFIER_DELIVERY_CONCURRENCY           deliveries in flight per process (default 8)
  NOTIFIER_POLL_SECONDS                   how often the worker looks for due retries (default 1)
  NOTIFIER_DELIVERY_LEASE_SECONDS         a claimed delivery whose worker died is sent again after
                                          this (default 60; more than the request timeout); Slack
                                          posts and events use the same lease

Slack:
  SLACK_API_URL                           Slack's Web API base URL (default https://slack.com/api/;
                                          the tests point it at a local server)
  NOTIFIER_CONVERSATION_URL_TEMPLATE      the link to a conversation in Slack posts, with
                                          {conversation_id} and {inbox_id} (default: none, the id
                                          is shown)
  NOTIFIER_SLACK_CONCURRENCY              Slack posts in flight per process (default 4)
"""

from __future__ import annotations

from dataclasses import dataclass

from mailroom_shared import config
from notifier.domain.retries import DEFAULT_SCHEDULE, parse_schedule
from notifier.domain.vault import Vault, VaultUnavailable


@dataclass(frozen=True)
class Settings:
    secret_key: str | None = None
    allow_http: bool = False
    allow_private_targets: bool = False
    retry_schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    connect_timeout: float = 5.0
    total_timeout: float = 15.0
    delivery_concurrency: int = 8
    poll_seconds: float = 1.0
    lease_seconds: float = 60.0
    slack_api_url: str = "https://slack.com/api/"
    conversation_url_template: str | None = None
    slack_concurrency: int = 4

    def __repr__(self) -> str:  # never print the key
        return (f"Settings(secret_key={'set' if self.secret_key else None}, allow_http={self.allow_http}, "
                f"allow_private_targets={self.allow_private_targets}, retry_schedule={self.retry_schedule})")

    @property
    def max_attempts(self) -> int:
        return len(self.retry_schedule) + 1


def load() -> Settings:
    """The settings from the environment (config.ConfigError naming the variable on a bad value)."""
    raw_schedule = config.env_list("NOTIFIER_WEBHOOK_RETRY_SCHEDULE")
    try:
        schedule = parse_schedule(raw_schedule) if raw_schedule else DEFAULT_SCHEDULE
    except ValueError as exc:
        raise config.ConfigError(f"NOTIFIER_WEBHOOK_RETRY_SCHEDULE: {exc}") from None
    key = config.env_str("NOTIFIER_SECRET_KEY") or None
    if key:
        try:
            Vault(key)
        except VaultUnavailable as exc:
            raise config.ConfigError(str(exc)) from None
    total = config.env_float("NOTIFIER_WEBHOOK_TIMEOUT_SECONDS", 15.0, minimum=0.1)
    return Settings(
        secret_key=key,
        allow_http=config.env_bool("NOTIFIER_ALLOW_HTTP_WEBHOOKS", False),
        allow_private_targets=config.env_bool("NOTIFIER_WEBHOOK_ALLOW_PRIVATE", False),
        retry_schedule=schedule,
        connect_timeout=min(config.env_float("NOTIFIER_WEBHOOK_CONNECT_TIMEOUT_SECONDS", 5.0, minimum=0.1), total),
        total_timeout=total,
        delivery_concurrency=config.env_int("NOTIFIER_DELIVERY_CONCURRENCY", 8, minimum=1),
        poll_seconds=config.env_float("NOTIFIER_POLL_SECONDS", 1.0, minimum=0.05),
        lease_seconds=config.env_float("NOTIFIER_DELIVERY_LEASE_SECONDS", max(total * 4, 60.0), minimum=total + 1),
        slack_api_url=config.env_str("SLACK_API_URL") or "https://slack.com/api/",
        conversation_url_template=config.env_str("NOTIFIER_CONVERSATION_URL_TEMPLATE") or None,
        slack_concurrency=config.env_int("NOTIFIER_SLACK_CONCURRENCY", 4, minimum=1),
    )
