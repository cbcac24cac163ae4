"""Standard Webhooks (https://www.standardwebhooks.com) secrets and signatures, through the
reference implementation (`standardwebhooks`): `webhook-signature` is `v1,` + base64 of
HMAC-SHA256 over `<webhook-id>.<webhook-timestamp>.<body>` with the secret's bytes."""

from __future__ import annotations

import base64
import datetime as dt
import secrets

from standardwebhooks.webhooks import Webhook

PREFIX = "whsec_"
SECRET_BYTES = 32
ROTATION_OVERLAP_SECONDS = 24 * 3600  # after a rotation the old secret keeps signing this long


def new_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def headers(secret: str | tuple[str, ...], message_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers for one request; several secrets (during a rotation)
    give several space-separated signatures, any of which a receiver accepts."""
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    secrets_ = (secret,) if isinstance(secret, str) else secret
    return {"webhook-id": message_id, "webhook-timestamp": str(int(timestamp)),
            "webhook-signature": " ".join(Webhook(s).sign(message_id, moment, body) for s in secrets_)}
