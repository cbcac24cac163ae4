"""Signing secrets encrypted at rest with a Fernet key from the environment
(NOTIFIER_SECRET_KEY): the shared SecretBox (mailroom_shared.signed_webhooks), the same Fernet
tokens as before, so secrets sealed earlier still open. The plain secret exists only in memory
while signing or once in the creation answer."""

from __future__ import annotations

from mailroom_shared.signed_webhooks import SecretBox
from mailroom_shared.signed_webhooks import SecretBoxUnavailable as VaultUnavailable

__all__ = ["Vault", "VaultUnavailable"]

SECRET_KEY_VARIABLE = "NOTIFIER_SECRET_KEY"  # noqa: S105 - a variable name, not a secret


class Vault(SecretBox):
    """The notifier's webhook and Slack secrets (VaultUnavailable: no key, or one that does not
    open the stored secret)."""

    def __init__(self, key: str | None):
        super().__init__(key, SECRET_KEY_VARIABLE, what="webhook secret")
