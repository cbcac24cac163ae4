"""Signed HTTP between mailroom and chat/form connectors (docs/channels.md), shared by
conversations (takes connector requests in, checks connector URLs) and outbound (delivers replies):

- Standard Webhooks (https://www.standardwebhooks.com) secrets and signatures through the reference
  implementation (`standardwebhooks`): `webhook-id`, `webhook-timestamp`, `webhook-signature`
  (`v1,` + base64 HMAC-SHA256 of `<id>.<timestamp>.<body>` with the secret's bytes), 5-minute
  timestamp tolerance;
- connector secrets sealed at rest with a Fernet key from the environment (SecretBox);
- outgoing requests that never reach private, loopback or link-local addresses unless allowed: the
  host is resolved, every address checked, and the connection made to the checked address (no DNS
  rebinding), TLS verified against the URL's host name.

The notifier has its own copy of the target checks and client (services/notifier, written first);
this module is the one for the channel connectors."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import ipaddress
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import eventlet
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
    """Fernet with the key named `variable` (for the error messages); the plain secret exists only
    in memory while signing or verifying, and once in the answer that creates it."""

    def __init__(self, key: str | None, variable: str):
        self._variable = variable
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
            raise SecretBoxUnavailable(f"{self._variable} is not set: connector secrets cannot be stored or used")
        return self._fernet

    def seal(self, secret: str) -> str:
        return self._need().encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._need().decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretBoxUnavailable(f"the stored connector secret does not open with {self._variable}") from None


# --- where a request may go --------------------------------------------------------------------

class TargetRefused(ValueError):
    """The URL or the address it resolves to is not allowed."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path + query, what goes on the request line


def parse_url(url: str, *, allow_http: bool = True) -> Target:
    """An absolute http(s) URL without credentials, else TargetRefused."""
    if not isinstance(url, str) or not url.strip() or len(url) > 2000:
        raise TargetRefused("the URL must be a string of 1 to 2000 characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from None
    if parts.scheme not in (("https", "http") if allow_http else ("https",)):
        raise TargetRefused("the URL must use http or https" if allow_http else "the URL must use https")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    if parts.username or parts.password:
        raise TargetRefused("the URL must not carry credentials")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path)


def address_refusal(address: str) -> str | None:
    """Why an IP address is not a public unicast address (None when it is)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attribute, what in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                            ("is_multicast", "multicast"), ("is_unspecified", "unspecified"),
                            ("is_reserved", "reserved"), ("is_private", "private")):
        if getattr(ip, attribute):
            return what
    return None if ip.is_global else "not global"


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"{host} does not resolve ({exc})") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def checked_target(url: str, *, allow_private: bool) -> tuple[Target, str]:
    """The URL's parts and the address to connect to: every address the host resolves to must be
    allowed (one public and one private address is refused)."""
    target = parse_url(url)
    addresses = resolve(target.host, target.port)
    if not addresses:
        raise TargetRefused(f"{target.host} does not resolve")
    if not allow_private:
        for address in addresses:
            why = address_refusal(address)
            if why:
                raise TargetRefused(f"{target.host} resolves to a {why} address ({address})")
    return target, addresses[0]


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no answer (refused target, timeout, connection error)
    error: str | None
    retry_after: float | None = None  # seconds, from a 429's or 503's Retry-After


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, address: str, target: Target, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    def __init__(self, address: str, target: Target, timeout: float, context: ssl.SSLContext):
        super().__init__(address, target, timeout)
        self._context = context

    def connect(self):
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def post(url: str, body: str, headers: dict[str, str], *, allow_private: bool, connect_timeout: float = 5.0,
         total_timeout: float = 15.0) -> Answer:
    """POST `body` (JSON) to `url` at a checked address; the answer's status, or why there is none."""
    started = time.monotonic()
    try:
        target, address = checked_target(url, allow_private=allow_private)
    except TargetRefused as exc:
        return Answer(None, f"refused: {exc}")
    connection = (_PinnedHTTPSConnection(address, target, connect_timeout, ssl.create_default_context())
                  if target.scheme == "https" else _PinnedHTTPConnection(address, target, connect_timeout))
    payload = body.encode()
    try:
        with eventlet.Timeout(max(0.1, total_timeout - (time.monotonic() - started))):
            connection.request("POST", target.path, body=payload, headers={
                **headers, "Content-Type": "application/json", "User-Agent": USER_AGENT,
                "Content-Length": str(len(payload))})
            response = connection.getresponse()
            response.read(65536)
            ok = 200 <= response.status < 300
            return Answer(response.status, None if ok else f"HTTP {response.status}",
                          _retry_after(response.getheader("Retry-After")))
    except eventlet.Timeout:
        return Answer(None, f"timed out after {total_timeout:g} s")
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}"[:500])
    finally:
        connection.close()
