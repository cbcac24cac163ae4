"""`Idempotency-Key`: the same key sends once. What a key may be, and the digest of the request it
was first used with (the same key with another request is a conflict, never a second email)."""

from __future__ import annotations

import hashlib
import json

from outbound.domain.errors import InvalidEmail


class IdempotencyConflict(Exception):
    pass


def request_digest(kind: str, target: str, body: dict) -> str:
    canonical = json.dumps({"kind": kind, "target": target, "body": body}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_idempotency_key(key: str | None) -> str | None:
    if key is None or key == "":
        return None
    if len(key) > 200 or not key.isprintable():
        raise InvalidEmail("Idempotency-Key: at most 200 printable characters", "Idempotency-Key")
    return key


def check_same_request(stored_digest: str | None, digest: str) -> None:
    if stored_digest != digest:
        raise IdempotencyConflict("this Idempotency-Key was used for a different request")
