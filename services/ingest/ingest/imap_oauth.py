"""XOAUTH2 for connected mailboxes (Gmail, Microsoft 365): access tokens obtained from the
provider's token endpoint with the mailbox's refresh token (RFC 6749 §6, the refresh grant), and
the SASL XOAUTH2 initial response IMAP logs in with.

The token URL is checked like every URL a user chooses (mailroom_shared.safe_http): https only,
no private, loopback or link-local address, the connection made to the checked address, unless
INGEST_IMAP_ALLOW_PLAINTEXT is on (development and tests: a local token endpoint). Secrets are
sent in the form body, never in the URL, and never appear in the errors this module raises.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from mailroom_shared import safe_http

MAX_ANSWER_BYTES = 64 * 1024
DEFAULT_LIFETIME = 3600  # seconds, when the answer has no expires_in
EARLY_REFRESH = timedelta(seconds=60)  # refresh this long before the token expires


class TokenRefreshFailed(Exception):
    """The token endpoint could not be reached or refused the refresh (its error code and
    description, never the secrets that were sent)."""


@dataclass(frozen=True)
class TokenAnswer:
    access_token: str = field(repr=False)
    expires_at: datetime
    refresh_token: str | None = field(default=None, repr=False)  # a rotated refresh token, when sent


def xoauth2_initial_response(username: str, access_token: str) -> bytes:
    """The SASL XOAUTH2 client response (before base64), as Google and Microsoft document it."""
    return f"user={username}\x01auth=Bearer {access_token}\x01\x01".encode()


def still_valid(expires_at: datetime | None, now: datetime | None = None) -> bool:
    if expires_at is None:
        return False
    if expires_at.tzinfo is None:  # SQLite hands back naive UTC datetimes
        expires_at = expires_at.replace(tzinfo=UTC)
    return expires_at - EARLY_REFRESH > (now or datetime.now(UTC))


def check_token_url(url: str, *, allow_insecure: bool) -> None:
    """TargetRefused (a ValueError) for a token URL that is not allowed (scheme, credentials);
    the address is checked again at each refresh."""
    safe_http.parse_url(url, allow_http=allow_insecure)


def refresh(token_url: str, client_id: str, client_secret: str, refresh_token: str, scope: str | None = None,
            *, allow_insecure: bool = False, timeout: float = 15.0,
            ssl_context: ssl.SSLContext | None = None) -> TokenAnswer:
    """A new access token from `token_url` (POST grant_type=refresh_token, form-encoded)."""
    try:
        target, address = safe_http.checked_target(token_url, allow_private=allow_insecure,
                                                   allow_http=allow_insecure)
    except safe_http.TargetRefused as exc:
        raise TokenRefreshFailed(f"token URL refused: {exc}") from None
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id,
            "client_secret": client_secret}
    if scope:
        form["scope"] = scope
    payload = urlencode(form).encode()
    if target.scheme == "https":
        connection = safe_http._PinnedHTTPSConnection(address, target, timeout,
                                                       ssl_context or ssl.create_default_context())
    else:
        connection = safe_http._PinnedHTTPConnection(address, target, timeout)
    try:
        connection.request("POST", target.path, body=payload, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
            "Content-Length": str(len(payload)), "User-Agent": "mailroom-ingest/1"})
        response = connection.getresponse()
        body = response.read(MAX_ANSWER_BYTES + 1)
        status = response.status
    except (OSError, ssl.SSLError, Exception) as exc:  # http.client.HTTPException and friends
        raise TokenRefreshFailed(f"token endpoint unreachable: {type(exc).__name__}: {exc}"[:500]) from None
    finally:
        connection.close()
    return parse_token_answer(status, body, secrets=(client_secret, refresh_token))


def parse_token_answer(status: int, body: bytes, secrets: tuple[str, ...] = ()) -> TokenAnswer:
    """The answer of the token endpoint; TokenRefreshFailed with its `error` and
    `error_description` (RFC 6749 §5.2) when it is not a token."""
    if len(body) > MAX_ANSWER_BYTES:
        raise TokenRefreshFailed(f"token endpoint answered HTTP {status} with more than {MAX_ANSWER_BYTES} bytes")
    try:
        answer = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        answer = None
    if not isinstance(answer, dict):
        raise TokenRefreshFailed(f"token endpoint answered HTTP {status} without a JSON object")
    if status != 200 or not isinstance(answer.get("access_token"), str) or not answer["access_token"]:
        reason = " ".join(str(answer.get(key))[:300] for key in ("error", "error_description") if answer.get(key))
        message = f"token endpoint answered HTTP {status}: {reason or 'no access_token'}"
        for secret in secrets:
            if secret:
                message = message.replace(secret, "***")
        raise TokenRefreshFailed(message)
    lifetime = answer.get("expires_in", DEFAULT_LIFETIME)
    try:
        lifetime = max(0, min(int(lifetime), 366 * 86400))
    except (TypeError, ValueError):
        lifetime = DEFAULT_LIFETIME
    rotated = answer.get("refresh_token")
    return TokenAnswer(access_token=answer["access_token"],
                       expires_at=datetime.now(UTC) + timedelta(seconds=lifetime),
                       refresh_token=rotated if isinstance(rotated, str) and rotated else None)
