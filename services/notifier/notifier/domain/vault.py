"""Signing secrets encrypted at rest with a Fernet key from the environment
(NOTIFIER_SECRET_KEY); the plain secret exists only in memory while signing or once in the
creation answer."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken


class VaultUnavailable(RuntimeError):
    """No key, or a key that does not open the stored secret."""


class Vault:
    def __init__(self, key: str | None):
        self._fernet = None
        if key:
            try:
                self._fernet = Fernet(key.encode() if isinstance(key, str) else key)
            except (ValueError, TypeError):
                raise VaultUnavailable("NOTIFIER_SECRET_KEY is not a Fernet key (32 url-safe base64 bytes)") from None

    def __repr__(self) -> str:
        return f"Vault(key={'set' if self._fernet else None})"

    def _need(self) -> Fernet:
        if self._fernet is None:
            raise VaultUnavailable("NOTIFIER_SECRET_KEY is not set: webhook secrets cannot be stored or used")
        return self._fernet

    def seal(self, secret: str) -> str:
        return self._need().encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._need().decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise VaultUnavailable("the stored webhook secret does not open with NOTIFIER_SECRET_KEY") from None
