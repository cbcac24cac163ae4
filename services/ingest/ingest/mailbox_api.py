"""IMAP mailboxes added through the API (`/api/ingest/mailboxes`, docs/mailboxes.md), beside the
YAML file's: stored in `api_mailboxes`, their secrets (password, OAuth client secret, refresh and
access tokens) sealed with Fernet under INGEST_MAILBOX_SECRET_KEY (mailroom_shared.signed_webhooks.
SecretBox) and never returned; the test-connection probe; the lease that lets one ingest replica
poll a mailbox at a time; each mailbox's status (on its `mailbox_cursors` row, YAML ones too).

Who may call: those who manage inboxes and channels in conversations (account_access or
super_admin, conversations' `can_manage`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import ssl
import uuid
from dataclasses import dataclass
from datetime import timedelta

from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError, IMAPClientError, LoginError
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ingest import imap_oauth, queries
from ingest.domain.mailboxes import AUTH_METHODS, MAX_CA_BUNDLE_BYTES, TLS_MODES, MailboxInvalid, check_complete
from ingest.imap_poller import MailboxConfig, PollResult
from ingest.models import ApiMailbox
from ingest.models import MailboxCursor as CursorRow
from ingest.settings import Settings
from mailroom_shared import auth
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.db import Database, utcnow
from mailroom_shared.http import Forbidden, HttpError, NotFound, PayloadTooLarge, ServiceUnavailable, schema_instance
from mailroom_shared.signed_webhooks import SecretBox, SecretBoxUnavailable

log = logging.getLogger(__name__)

SECRET_KEY_VARIABLE = "INGEST_MAILBOX_SECRET_KEY"  # noqa: S105 - a variable name, not a secret
_replica_id: tuple[int, str] | None = None


def replica_id() -> str:
    """This process, as a lease owner: unique across replicas and restarts. Made on first use and
    again in a forked process (a value made at import would be shared by every process forked from
    the importing one, and two replicas holding one lease would both poll the mailbox)."""
    global _replica_id
    pid = os.getpid()
    if _replica_id is None or _replica_id[0] != pid:
        _replica_id = (pid, f"{socket.gethostname()[:120]}:{pid}:{uuid.uuid4().hex[:12]}")
    return _replica_id[1]


PROBE_TIMEOUT = 15.0
MANAGE_REFUSAL = "managing connected mailboxes needs the account_access or super_admin role"


def require_manage(principal: auth.Principal) -> None:
    """The callers who manage inboxes and their channels in conversations."""
    if not (principal.account_access or principal.super_admin):
        raise Forbidden(MANAGE_REFUSAL)


# --- request bodies ------------------------------------------------------------------------------

class StrictInteger(fields.Integer):
    """An integer, and only one: not "993", not 993.0, not true."""

    def _validated(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return super()._validated(value)


def _text(maximum: int, *, required: bool = False, minimum: int = 1, **kwargs) -> fields.String:
    return fields.String(required=required, validate=validate.Length(minimum, maximum), **kwargs)


class OAuthSchema(Schema):
    token_url = _text(2000)
    client_id = _text(500)
    client_secret = _text(4000)
    refresh_token = _text(8000)
    scope = fields.String(allow_none=True, validate=validate.Length(max=2000))


class MailboxPatchSchema(Schema):
    address = fields.Email(validate=validate.Length(max=320))
    host = _text(253)
    port = StrictInteger(validate=validate.Range(1, 65535))
    tls = fields.String(validate=validate.OneOf(TLS_MODES))
    ca_bundle = fields.String(allow_none=True, validate=validate.Length(max=MAX_CA_BUNDLE_BYTES))
    folder = _text(500)
    username = _text(320)
    auth = fields.String(validate=validate.OneOf(AUTH_METHODS))
    password = _text(1000)
    oauth = fields.Nested(OAuthSchema)


class MailboxCreateSchema(MailboxPatchSchema):
    address = fields.Email(required=True, validate=validate.Length(max=320))
    host = _text(253, required=True)
    port = StrictInteger(required=True, validate=validate.Range(1, 65535))
    tls = fields.String(required=True, validate=validate.OneOf(TLS_MODES))
    folder = _text(500, load_default="INBOX")
    username = _text(320, required=True)
    auth = fields.String(required=True, validate=validate.OneOf(AUTH_METHODS))

    @validates_schema
    def _secret_for_auth(self, data, **kwargs):
        if data.get("auth") == "password" and "oauth" in data:
            raise ValidationError("oauth goes with auth \"xoauth2\"", "oauth")
        if data.get("auth") == "xoauth2" and "password" in data:
            raise ValidationError("password goes with auth \"password\"", "password")


MAX_BODY_BYTES = 2 * MAX_CA_BUNDLE_BYTES


def read_body(request) -> dict:
    """The JSON body, refused unread past MAX_BODY_BYTES (a CA bundle is the largest field)."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"a mailbox is at most {MAX_BODY_BYTES} bytes of JSON")
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"a mailbox is at most {MAX_BODY_BYTES} bytes of JSON")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HttpError("request body must be a JSON object")
    return body


class MailboxStatusSchema(Schema):
    last_poll_at = fields.DateTime(allow_none=True)
    last_success_at = fields.DateTime(allow_none=True)
    last_error = fields.String(allow_none=True)
    unreachable_since = fields.DateTime(allow_none=True)
    messages_fetched = fields.Integer()
    consecutive_failures = fields.Integer()


class OAuthViewSchema(Schema):
    token_url = fields.String()
    client_id = fields.String()
    scope = fields.String(allow_none=True)
    client_secret_set = fields.Boolean()
    refresh_token_set = fields.Boolean()


class MailboxViewSchema(Schema):
    """A connected mailbox as answered: never a secret, only whether one is stored."""

    id = fields.String()
    address = fields.String()
    host = fields.String()
    port = fields.Integer()
    tls = fields.String(metadata={"enum": list(TLS_MODES)})
    ca_bundle = fields.String(allow_none=True)
    folder = fields.String()
    username = fields.String()
    auth = fields.String(metadata={"enum": list(AUTH_METHODS)})
    password_set = fields.Boolean()
    oauth = fields.Nested(OAuthViewSchema, allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    status = fields.Nested(MailboxStatusSchema)


class MailboxListSchema(Schema):
    items = fields.List(fields.Nested(MailboxViewSchema))


class MailboxTestSchema(Schema):
    ok = fields.Boolean()
    stage = fields.String(metadata={"enum": ["connect", "tls", "login", "select", "ok"]})
    server_answer = fields.String(metadata={"description": "the server's own words"})


# --- secrets ---------------------------------------------------------------------------------------

def secret_box(settings: Settings) -> SecretBox:
    try:
        return SecretBox(settings.mailbox_secret_key, SECRET_KEY_VARIABLE)
    except SecretBoxUnavailable as exc:
        raise ServiceUnavailable(str(exc)) from None


def _need_box(settings: Settings) -> SecretBox:
    box = secret_box(settings)
    if not box.available:
        raise ServiceUnavailable(f"{SECRET_KEY_VARIABLE} is not set: mailbox secrets cannot be stored or used")
    return box


# --- create, read, update, delete ------------------------------------------------------------------

def _invalid(exc: MailboxInvalid) -> ValidationError:
    return ValidationError({exc.field: [exc.message]})


def _known_address(session: Session, address: str) -> str:
    normalised = try_normalise_email(address)
    if normalised is None or normalised not in queries.known_channels(session):
        raise ValidationError({"address": [f"{address} is not one of our inbox addresses"]})
    return normalised


def _check_oauth_url(oauth: dict | None, settings: Settings) -> None:
    if oauth and oauth.get("token_url"):
        try:
            imap_oauth.check_token_url(oauth["token_url"], allow_insecure=settings.imap_allow_plaintext)
        except ValueError as exc:
            raise ValidationError({"oauth": {"token_url": [str(exc)]}}) from None


def create(session: Session, settings: Settings, body: dict) -> dict:
    data = schema_instance(MailboxCreateSchema).load(body)
    box = _need_box(settings)
    data["address"] = _known_address(session, data["address"])
    try:
        check_complete(data, allow_plaintext=settings.imap_allow_plaintext)
    except MailboxInvalid as exc:
        raise _invalid(exc) from None
    _check_oauth_url(data.get("oauth"), settings)
    row = ApiMailbox(id=str(uuid.uuid4()), created_at=utcnow(), updated_at=utcnow())
    _apply(row, data, box)
    session.add(row)
    session.flush()
    log.info("mailbox %s added for %s (%s:%s, %s)", row.id, row.address, row.host, row.port, row.auth)
    return view(row, None)


def update_mailbox(session: Session, settings: Settings, mailbox_id: str, body: dict) -> dict:
    changes = schema_instance(MailboxPatchSchema).load(body)
    box = _need_box(settings)
    row = _get(session, mailbox_id)
    if "address" in changes:
        changes["address"] = _known_address(session, changes["address"])
    merged = _as_dict(row)
    oauth = {**(merged.get("oauth") or {}), **changes.get("oauth", {})} if (
        changes.get("auth", row.auth) == "xoauth2") else None
    merged.update({key: value for key, value in changes.items() if key != "oauth"})
    merged["oauth"] = oauth
    if merged["auth"] == "xoauth2":
        merged.pop("password", None)
    try:
        check_complete(merged, allow_plaintext=settings.imap_allow_plaintext)
    except MailboxInvalid as exc:
        raise _invalid(exc) from None
    _check_oauth_url(changes.get("oauth"), settings)
    where = (row.host, row.port, row.username, row.folder)
    if "oauth" in changes or changes.get("auth", row.auth) != row.auth:
        row.access_token_sealed, row.access_token_expires_at = None, None  # made for other credentials
    _apply(row, {**changes, "oauth": changes.get("oauth")} if "oauth" in changes else changes, box)
    if row.auth == "password":
        row.token_url = row.client_id = row.scope = None
        row.client_secret_sealed = row.refresh_token_sealed = row.access_token_sealed = None
    else:
        row.password_sealed = None
    if (row.host, row.port, row.username, row.folder) != where:  # another mailbox: its UIDs mean nothing
        cursor = session.get(CursorRow, row.id)
        if cursor is not None:
            cursor.uidvalidity, cursor.last_uid = None, 0
    row.updated_at = utcnow()
    session.flush()
    return view(row, session.get(CursorRow, row.id))


def _apply(row: ApiMailbox, data: dict, box: SecretBox) -> None:
    for name in ("address", "host", "port", "tls", "folder", "username", "auth"):
        if name in data:
            setattr(row, name, data[name])
    if "ca_bundle" in data:
        row.ca_bundle = data["ca_bundle"] or None
    if data.get("password"):
        row.password_sealed = box.seal(data["password"])
    oauth = data.get("oauth")
    if oauth:
        for name in ("token_url", "client_id", "scope"):
            if name in oauth:
                setattr(row, name, oauth[name] or None)
        if oauth.get("client_secret"):
            row.client_secret_sealed = box.seal(oauth["client_secret"])
        if oauth.get("refresh_token"):
            row.refresh_token_sealed = box.seal(oauth["refresh_token"])


def _as_dict(row: ApiMailbox) -> dict:
    """The stored mailbox for check_complete, a placeholder for each stored secret."""
    oauth = {"token_url": row.token_url, "client_id": row.client_id, "scope": row.scope,
             "client_secret": bool(row.client_secret_sealed), "refresh_token": bool(row.refresh_token_sealed)}
    return {"address": row.address, "host": row.host, "port": row.port, "tls": row.tls, "ca_bundle": row.ca_bundle,
            "folder": row.folder, "username": row.username, "auth": row.auth,
            "password": bool(row.password_sealed), "oauth": oauth if row.auth == "xoauth2" else None}


def _get(session: Session, mailbox_id: str) -> ApiMailbox:
    row = session.get(ApiMailbox, mailbox_id) if len(mailbox_id) <= 36 else None
    if row is None:
        raise NotFound(f"no mailbox {mailbox_id}")
    return row


def get_view(session: Session, mailbox_id: str) -> dict:
    row = _get(session, mailbox_id)
    return view(row, session.get(CursorRow, row.id))


def list_view(session: Session) -> dict:
    rows = session.execute(select(ApiMailbox).order_by(ApiMailbox.created_at, ApiMailbox.id)).scalars().all()
    cursors = {c.mailbox_id: c for c in session.execute(
        select(CursorRow).where(CursorRow.mailbox_id.in_([r.id for r in rows]))).scalars()} if rows else {}
    return {"items": [view(row, cursors.get(row.id)) for row in rows]}


def delete_mailbox(session: Session, mailbox_id: str) -> None:
    row = _get(session, mailbox_id)
    session.delete(row)
    session.execute(delete(CursorRow).where(CursorRow.mailbox_id == row.id))
    log.info("mailbox %s removed", mailbox_id)


def view(row: ApiMailbox, cursor: CursorRow | None) -> dict:
    """The mailbox as the API shows it: never a secret, only whether one is stored."""
    return {
        "id": row.id, "address": row.address, "host": row.host, "port": row.port, "tls": row.tls,
        "ca_bundle": row.ca_bundle, "folder": row.folder, "username": row.username, "auth": row.auth,
        "password_set": bool(row.password_sealed),
        "oauth": ({"token_url": row.token_url, "client_id": row.client_id, "scope": row.scope,
                   "client_secret_set": bool(row.client_secret_sealed),
                   "refresh_token_set": bool(row.refresh_token_sealed)} if row.auth == "xoauth2" else None),
        "created_at": row.created_at, "updated_at": row.updated_at,
        "status": status_view(cursor),
    }


def status_view(cursor: CursorRow | None) -> dict:
    if cursor is None:
        return {"last_poll_at": None, "last_success_at": None, "last_error": None, "unreachable_since": None,
                "messages_fetched": 0, "consecutive_failures": 0}
    return {"last_poll_at": cursor.last_poll_at, "last_success_at": cursor.last_success_at,
            "last_error": cursor.last_error, "unreachable_since": cursor.unreachable_since,
            "messages_fetched": cursor.messages_fetched or 0,
            "consecutive_failures": cursor.consecutive_failures or 0}


# --- what the poller polls -------------------------------------------------------------------------

class MailboxUnusable(Exception):
    """The stored mailbox cannot be polled now (its secret does not open, the token refresh
    failed); the message is its status's last_error."""


class MailboxRemoved(MailboxUnusable):
    """Removed through the API since the poll began: nothing to poll, nothing to record."""


@dataclass(frozen=True)
class ApiMailboxRef:
    id: str
    address: str


def api_mailboxes(database: Database) -> list[ApiMailboxRef]:
    with database.transaction() as session:
        return [ApiMailboxRef(id, address) for id, address in session.execute(
            select(ApiMailbox.id, ApiMailbox.address).order_by(ApiMailbox.created_at, ApiMailbox.id))]


def poll_config(database: Database, settings: Settings, mailbox_id: str) -> tuple[MailboxConfig, str]:
    """The poller's config of a stored mailbox, its secrets opened and, for XOAUTH2, a valid
    access token (refreshed from its token URL when due; a rotated refresh token is stored)."""
    box = secret_box(settings)
    with database.transaction() as session:
        row = session.get(ApiMailbox, mailbox_id)
        if row is None:
            raise MailboxRemoved("the mailbox was removed")
        try:
            return _config(session, row, box, settings), row.address
        except SecretBoxUnavailable as exc:
            raise MailboxUnusable(str(exc)) from None


def _config(session: Session, row: ApiMailbox, box: SecretBox, settings: Settings) -> MailboxConfig:
    password, token = "", None
    if row.auth == "password":
        password = box.open(row.password_sealed)
    else:
        token = access_token(session, row, box, settings)
    return MailboxConfig(
        id=row.id, host=row.host, port=row.port, username=row.username, password=password, oauth2_token=token,
        ssl=row.tls == "implicit", starttls=row.tls == "starttls", ca_data=row.ca_bundle, folder=row.folder,
        max_message_bytes=settings.max_message_bytes, timeout=PROBE_TIMEOUT * 2,
        # not counted as the team's own mailbox for forward attribution (that is the YAML file's
        # team_mailbox, read from settings): mail fetched from it is not authenticated by it
        team_mailbox=False)


def access_token(session: Session, row: ApiMailbox, box: SecretBox, settings: Settings) -> str:
    if row.access_token_sealed and imap_oauth.still_valid(row.access_token_expires_at):
        return box.open(row.access_token_sealed)
    try:
        answer = imap_oauth.refresh(row.token_url, row.client_id, box.open(row.client_secret_sealed),
                                    box.open(row.refresh_token_sealed), row.scope,
                                    allow_insecure=settings.imap_allow_plaintext)
    except imap_oauth.TokenRefreshFailed as exc:
        raise MailboxUnusable(f"XOAUTH2 token refresh failed: {exc}") from None
    row.access_token_sealed = box.seal(answer.access_token)
    row.access_token_expires_at = answer.expires_at
    if answer.refresh_token:  # the provider rotated it: the old one may already be dead
        row.refresh_token_sealed = box.seal(answer.refresh_token)
    session.flush()
    return answer.access_token


# --- one replica per mailbox -----------------------------------------------------------------------

def acquire_lease(database: Database, mailbox_id: str, owner: str, seconds: float) -> bool:
    """Take or renew the lease on `mailbox_id` for `seconds`: True when `owner` holds it (it had
    it, nobody had it, or the holder's lease expired: a replica that died hands over)."""
    now = utcnow()
    with database.transaction() as session:
        if session.get(CursorRow, mailbox_id) is None:
            try:
                with session.begin_nested():
                    session.add(CursorRow(mailbox_id=mailbox_id, last_uid=0, consecutive_failures=0,
                                          messages_fetched=0))
            except IntegrityError:  # another replica made it first
                pass
        taken = session.execute(
            update(CursorRow)
            .where(CursorRow.mailbox_id == mailbox_id,
                   or_(CursorRow.lease_owner.is_(None), CursorRow.lease_owner == owner,
                       CursorRow.lease_expires_at.is_(None), CursorRow.lease_expires_at < now))
            .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds))
            .execution_options(synchronize_session=False))
        return taken.rowcount == 1


def release_leases(database: Database, owner: str) -> None:
    """On a clean stop: hand this replica's mailboxes over at once instead of at expiry."""
    with database.transaction() as session:
        session.execute(update(CursorRow).where(CursorRow.lease_owner == owner)
                        .values(lease_owner=None, lease_expires_at=None)
                        .execution_options(synchronize_session=False))


def record_status(session: Session, mailbox_id: str, result: PollResult) -> None:
    """The status of a poll on the mailbox's cursor row (its last_error and failure count are
    handlers.record_mailbox_poll's)."""
    row = session.get(CursorRow, mailbox_id)
    if row is None:
        return
    now = utcnow()
    row.last_poll_at = now
    row.messages_fetched = (row.messages_fetched or 0) + result.fetched
    if result.error is None:
        row.last_success_at, row.unreachable_since = now, None
    elif not result.reachable:
        row.unreachable_since = row.unreachable_since or now


# --- test connection -------------------------------------------------------------------------------

def test_connection(database: Database, settings: Settings, mailbox_id: str) -> dict:
    """Connect, TLS, log in and select the folder once, as the poller would: how far it got and the
    server's own words ({ok, stage, server_answer})."""
    with database.transaction() as session:
        _get(session, mailbox_id)
    _need_box(settings)
    try:
        config, _address = poll_config(database, settings, mailbox_id)
    except MailboxUnusable as exc:
        return {"ok": False, "stage": "login", "server_answer": str(exc)}
    return probe(config)


def probe(cfg: MailboxConfig, client_factory=IMAPClient) -> dict:
    stage, client = "connect", None
    answer = ""
    try:
        context = (ssl.create_default_context(cadata=cfg.ca_data) if (cfg.ssl or cfg.starttls) else None)
        if cfg.ssl:
            stage = "tls"  # IMAPClient connects and handshakes at once: a socket error is still "connect"
        client = client_factory(cfg.host, port=cfg.port, ssl=cfg.ssl, ssl_context=context,
                                timeout=min(cfg.timeout, PROBE_TIMEOUT))
        answer = _text_of(client.welcome)
        if cfg.starttls:
            stage = "tls"
            answer = _text_of(client.starttls(context))
        stage = "login"
        answer = _text_of(client.oauth2_login(cfg.username, cfg.oauth2_token) if cfg.oauth2_token
                          else client.login(cfg.username, cfg.password))
        stage = "select"
        selected = client.select_folder(cfg.folder, readonly=True)
        exists = selected.get(b"EXISTS")
        return {"ok": True, "stage": "ok",
                "server_answer": _redact(f"{answer}; {cfg.folder}: {exists} messages", cfg)}
    except ssl.SSLError as exc:  # before OSError: SSLError is one
        return {"ok": False, "stage": "tls", "server_answer": _redact(f"TLS failed: {exc}", cfg)}
    except CapabilityError as exc:
        return {"ok": False, "stage": "tls", "server_answer": _redact(str(exc), cfg)}
    except LoginError as exc:
        return {"ok": False, "stage": "login", "server_answer": _redact(_text_of(str(exc)), cfg)}
    except OSError as exc:
        return {"ok": False, "stage": "connect" if stage in ("connect", "tls") and client is None else stage,
                "server_answer": _redact(f"{type(exc).__name__}: {exc}", cfg)}
    except IMAPClientError as exc:
        return {"ok": False, "stage": stage, "server_answer": _redact(_text_of(str(exc)), cfg)}
    finally:
        if client is not None:
            with contextlib.suppress(IMAPClientError, OSError):
                client.logout()


def _text_of(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    text = str(value)
    if text.startswith(("b'", 'b"')) and text.endswith(("'", '"')):  # imaplib's repr of bytes
        text = text[2:-1]
    return text


def _redact(message: str, cfg: MailboxConfig) -> str:
    for secret in (cfg.password, cfg.oauth2_token):
        if secret:
            message = message.replace(secret, "***")
    return message[:2000]

