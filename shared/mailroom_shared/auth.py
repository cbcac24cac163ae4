"""Bearer-token authentication shared by every service's HTTP API (docs/access.md).

A request carries `Authorization: Bearer <JWT>`. The token is verified with
  * an HS256 secret from `MAILROOM_JWT_SECRET`, or
  * the keys published at `MAILROOM_JWKS_URL` (RS256/ES256…, fetched and cached by PyJWT's
    `PyJWKClient`),
and, when set, `MAILROOM_JWT_ISSUER` / `MAILROOM_JWT_AUDIENCE` must match. With neither a secret
nor a JWKS URL (a local `make run`), a development secret is created once under
`MAILROOM_VAR_DIR` (`dev-jwt-secret`, mode 0600) and shared by every local process and by
`mailroom dev-token`; a warning says so. Production sets one of the two.

Claims (see docs/access.md):
  sub                user id (required)
  email              the user's address (optional)
  teams              list of team ids (optional)
  roles              list; `account_access` and `super_admin` are the ones mailroom knows
                     (`account_access: true` / `super_admin: true` booleans are accepted too)
  exp                required

Which inbox a principal may view or act in is decided by the conversations service (it owns
inboxes); this module only says who the caller is. Capability URLs (`sign_blob_access`) let a
browser fetch one stored message's raw bytes / attachments (e.g. `<img>` sources) without a
bearer header, after conversations checked the inbox.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt

from mailroom_shared.http import Unauthorized

log = logging.getLogger(__name__)

ACCOUNT_ACCESS = "account_access"
SUPER_ADMIN = "super_admin"
KNOWN_ROLES = (ACCOUNT_ACCESS, SUPER_ADMIN)
LEEWAY_SECONDS = 30
BLOB_TOKEN_TYPE = "mailroom-blob"  # noqa: S105 - a claim value
BLOB_TOKEN_SECONDS = 3600
DEV_SECRET_FILE = "dev-jwt-secret"  # noqa: S105 - a file name


@dataclass(frozen=True)
class Principal:
    """The verified caller of an HTTP request."""

    user_id: str
    email: str | None = None
    team_ids: frozenset[str] = field(default_factory=frozenset)
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def account_access(self) -> bool:
        return ACCOUNT_ACCESS in self.roles

    @property
    def super_admin(self) -> bool:
        return SUPER_ADMIN in self.roles

    @property
    def sees_every_inbox(self) -> bool:
        """Account-access and super-admin users view every conversation (acting needs membership)."""
        return self.account_access or self.super_admin

    def as_dict(self) -> dict:
        return {"user_id": self.user_id, "email": self.email, "team_ids": sorted(self.team_ids),
                "roles": sorted(self.roles)}


class AuthConfigError(RuntimeError):
    pass


@dataclass(frozen=True)
class AuthSettings:
    secret: str | None
    jwks_url: str | None
    issuer: str | None
    audience: str | None
    algorithms: tuple[str, ...]
    blob_secret: str | None  # signs capability URLs (MAILROOM_URL_SIGNING_SECRET, else the HS256 secret)


def _dev_secret() -> str:
    from mailroom_shared.config import var_dir

    path = Path(var_dir()) / DEV_SECRET_FILE
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    value = path.read_text().strip()
    if not value:
        raise AuthConfigError(f"{path} is empty: delete it or set MAILROOM_JWT_SECRET")
    log.warning("MAILROOM_JWT_SECRET and MAILROOM_JWKS_URL are unset: using the development secret in %s "
                "(`mailroom dev-token` mints tokens for it). Set one of them in production.", path)
    return value


def settings() -> AuthSettings:
    secret = os.environ.get("MAILROOM_JWT_SECRET") or None
    jwks_url = os.environ.get("MAILROOM_JWKS_URL") or None
    if secret and jwks_url:
        raise AuthConfigError("set MAILROOM_JWT_SECRET or MAILROOM_JWKS_URL, not both")
    if not secret and not jwks_url:
        if os.environ.get("MAILROOM_DEV_AUTH", "true").strip().lower() in {"0", "false", "no", "off"}:
            # deployments set this: a pod must never invent its own secret (tokens would fail between pods)
            raise AuthConfigError("MAILROOM_JWT_SECRET or MAILROOM_JWKS_URL must be set (MAILROOM_DEV_AUTH=false)")
        secret = _dev_secret()
    algorithms = tuple(a.strip() for a in os.environ.get(
        "MAILROOM_JWT_ALGORITHMS", "HS256" if secret else "RS256,ES256").split(",") if a.strip())
    if secret and any(not a.startswith("HS") for a in algorithms):
        raise AuthConfigError("with MAILROOM_JWT_SECRET only HS* algorithms make sense")
    if jwks_url and any(a.startswith("HS") for a in algorithms):
        raise AuthConfigError("with MAILROOM_JWKS_URL, HS* algorithms are refused (key confusion)")
    return AuthSettings(secret=secret, jwks_url=jwks_url, issuer=os.environ.get("MAILROOM_JWT_ISSUER") or None,
                        audience=os.environ.get("MAILROOM_JWT_AUDIENCE") or None, algorithms=algorithms,
                        blob_secret=os.environ.get("MAILROOM_URL_SIGNING_SECRET") or secret)


_cache_lock = threading.Lock()
_cached: dict = {}


def _current() -> tuple[AuthSettings, jwt.PyJWKClient | None]:
    """Settings read once per process (and per environment: tests change it)."""
    key = tuple(os.environ.get(n) for n in ("MAILROOM_JWT_SECRET", "MAILROOM_JWKS_URL", "MAILROOM_JWT_ISSUER",
                                            "MAILROOM_JWT_AUDIENCE", "MAILROOM_JWT_ALGORITHMS",
                                            "MAILROOM_URL_SIGNING_SECRET", "MAILROOM_VAR_DIR", "MAILROOM_DEV_AUTH"))
    with _cache_lock:
        if _cached.get("key") != key:
            current = settings()
            client = jwt.PyJWKClient(current.jwks_url, cache_keys=True, lifespan=300, timeout=10) \
                if current.jwks_url else None
            _cached.update(key=key, settings=current, client=client)
        return _cached["settings"], _cached["client"]


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(v) for v in value if isinstance(v, str | int)]
    return []


def principal_from_claims(claims: dict) -> Principal:
    user_id = claims.get("sub")
    if not isinstance(user_id, str) or not user_id.strip():
        raise Unauthorized("the token has no user id (sub)")
    roles = set(_as_list(claims.get("roles")))
    roles.update(role for role in KNOWN_ROLES if claims.get(role) is True)
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    return Principal(user_id=user_id.strip(), email=(email or "").strip().lower() or None,
                     team_ids=frozenset(_as_list(claims.get("teams"))), roles=frozenset(roles))


def verify_token(token: str) -> Principal:
    """The principal of a bearer token; raises Unauthorized with a clear reason."""
    current, client = _current()
    try:
        key = client.get_signing_key_from_jwt(token).key if client else current.secret
        claims = jwt.decode(token, key, algorithms=list(current.algorithms), audience=current.audience,
                            issuer=current.issuer, leeway=LEEWAY_SECONDS,
                            options={"require": ["exp", "sub"], "verify_aud": current.audience is not None})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the token has expired") from exc
    except jwt.PyJWKClientError as exc:
        log.warning("JWKS lookup failed: %s", exc)
        raise Unauthorized("the token's signing key is unknown") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from exc
    if claims.get("typ") == BLOB_TOKEN_TYPE:
        raise Unauthorized("a download token is not a bearer token")
    return principal_from_claims(claims)


def bearer_token(request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate(request) -> Principal:
    """The caller of an HTTP request, or Unauthorized (401)."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("sign in: send `Authorization: Bearer <token>`")
    return verify_token(token)


def authenticated(func):
    """Decorator for `@json_endpoint` handlers: 401 without a valid token; the principal is
    passed on as `request.principal`."""

    @functools.wraps(func)
    def wrapper(self, request, *args, **kwargs):
        request.principal = authenticate(request)
        return func(self, request, *args, **kwargs)

    return wrapper


# --- capability URLs for stored messages (raw bytes, attachments) ------------------------------

def sign_blob_access(intake_id: str, user_id: str, seconds: int = BLOB_TOKEN_SECONDS) -> str | None:
    """A short-lived token granting read access to one stored message's raw bytes and
    attachments (None when no signing secret is configured: see docs/access.md)."""
    current, _ = _current()
    if not current.blob_secret:
        return None
    now = int(time.time())
    return jwt.encode({"typ": BLOB_TOKEN_TYPE, "intake": intake_id, "sub": user_id, "iat": now,
                       "exp": now + seconds}, current.blob_secret, algorithm="HS256")


def verify_blob_access(token: str, intake_id: str) -> str:
    """The user id a capability token was issued to, if it grants `intake_id`; else Unauthorized."""
    current, _ = _current()
    if not current.blob_secret:
        raise Unauthorized("download links are not enabled (MAILROOM_URL_SIGNING_SECRET)")
    try:
        claims = jwt.decode(token, current.blob_secret, algorithms=["HS256"], leeway=LEEWAY_SECONDS,
                            options={"require": ["exp", "sub", "intake", "typ"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the download link has expired: reload the message") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid download link: {exc}") from exc
    if claims.get("typ") != BLOB_TOKEN_TYPE or claims.get("intake") != intake_id:
        raise Unauthorized("this download link is for another message")
    return claims["sub"]


def with_access(url: str | None, token: str | None) -> str | None:
    if not url or not token:
        return url
    return f"{url}{'&' if '?' in url else '?'}access={token}"


# --- minting (development and tests) --------------------------------------------------------------

def mint_token(user_id: str, *, email: str | None = None, teams: list[str] | tuple[str, ...] = (),
               roles: list[str] | tuple[str, ...] = (), secret: str | None = None, seconds: int = 12 * 3600,
               issuer: str | None = None, audience: str | None = None, extra: dict | None = None) -> str:
    """An HS256 token for `user_id` (dev-token, tests). Uses MAILROOM_JWT_SECRET / the dev secret."""
    if secret is None:
        current, _ = _current()
        if not current.secret:
            raise AuthConfigError("tokens can be minted only with an HS256 secret (MAILROOM_JWT_SECRET)")
        secret = current.secret
        issuer = issuer or current.issuer
        audience = audience or current.audience
    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "exp": now + seconds, "teams": list(teams), "roles": list(roles)}
    if email:
        claims["email"] = email
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    claims.update(extra or {})
    return jwt.encode(claims, secret, algorithm="HS256")
