"""Signed HTTP between mailroom and chat/form connectors (docs/channels.md), shared by
conversations (takes connector requests in, checks connector URLs) and outbound (delivers replies):

- Standard Webhooks (https://www.standardwebhooks.com) secrets and signatures through the reference
  implementation (`standardwebhooks`): `webhook-id`, `webhook-timestamp`, `webhook-signature`
  (`v1,` + base64 HMAC-SHA256 of `<id>.<timestamp>.<body>` with the secret's bytes), 5-minute
  timestamp tolerance;
- connector secrets sealed at rest with a Fernet key from the environment (SecretBox);
- where requests to connectors may go, and how they are made: `mailroom_shared.safe_http` (shared
  with the notifier's webhooks)."""

from __future__ import annotations

import base64
import datetime as dt
import secrets

from cryptography.fernet import Fernet, InvalidToken
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret
SECRET_BYTES = 32
TOLERANCE_SECONDS = 5 * 60  # standardwebhooks' own tolerance; said here for the docs
USER_AGENT = "mailroom-connectors/1"


# --- Standard Webhooks ---------------------------------------------------------------------------

class BadSignature(ValueError):
    """Missing, malformed, wrong or stale signature headers."""


def new_secret() -> str:
    """A fresh connector secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers of one request."""
    moment = dt.datetime.fromtimestamp(int(timestamp), tz=dt.UTC)
    return {"webhook-id": message_id, "webhook-timestamp": str(int(timestamp)),
            "webhook-signature": Webhook(secret).sign(message_id, moment, body)}


def verify(secret: str, body: bytes, headers) -> str:
    """The request's `webhook-id` when its signature is right and its timestamp within five
    minutes of now; BadSignature otherwise."""
    wanted = {name: headers.get(name) for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    if not all(wanted.values()):
        raise BadSignature("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        Webhook(secret).verify(body, wanted, json_parse=False)
    except WebhookVerificationError as exc:
        raise BadSignature(str(exc)) from None
    except (ValueError, TypeError, UnicodeError) as exc:  # e.g. a non-numeric timestamp
        raise BadSignature(f"malformed signature headers: {exc}") from None
    return wanted["webhook-id"]


# --- secrets at rest -----------------------------------------------------------------------------

class SecretBoxUnavailable(RuntimeError):
    """No key, or a key that does not open the stored secret."""


class SecretBox:
    """Fernet with the key named `variable` (for the error messages, which call the sealed values
    `what`); the plain secret exists only in memory while signing or verifying, and once in the
    answer that creates it."""

    def __init__(self, key: str | None, variable: str, what: str = "connector secret"):
        self._variable = variable
        self._what = what
        self._fernet = None
        if key:
            try:
                self._fernet = Fernet(key.encode() if isinstance(key, str) else key)
            except (ValueError, TypeError):
                raise SecretBoxUnavailable(f"{variable} is not a Fernet key (32 url-safe base64 bytes)") from None

    def __repr__(self) -> str:
        return f"SecretBox({self._variable}={'set' if self._fernet else None})"

    @property
    def available(self) -> bool:
        return self._fernet is not None

    def _need(self) -> Fernet:
        if self._fernet is None:
            raise SecretBoxUnavailable(f"{self._variable} is not set: {self._what}s cannot be stored or used")
        return self._fernet

    def seal(self, secret: str) -> str:
        return self._need().encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._need().decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretBoxUnavailable(f"the stored {self._what} does not open with {self._variable}") from None
