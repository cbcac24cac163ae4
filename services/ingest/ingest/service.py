"""nameko adapter of the ingest service: the raw-MIME HTTP endpoint, blob downloads, inbox
updates, the IMAP poller timer, and the intake processor. The SMTP listener is its own process
(smtp_listener.py) writing to the same database and blob store."""

from __future__ import annotations

import contextlib
import json
import logging

import eventlet
from eventlet.hubs import trampoline
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.timer import timer
from nameko.web.handlers import http
from werkzeug.wrappers import Response

from ingest import SERVICE_NAME, intake, mailboxes
from ingest import config as ingest_config
from ingest.blobstore import BlobNotFound, DirectoryBlobStore
from ingest.domain.parsing import parse_message
from ingest.domain.sanitize import html_preview, sanitize_html
from ingest.models import Intake, outbox, processed_events
from mailroom_shared import auth, config
from mailroom_shared.db import Database, is_postgres
from mailroom_shared.events.envelope import parse_envelope
from mailroom_shared.http import (
    Forbidden,
    HttpError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    health_response,
    json_endpoint,
)
from mailroom_shared.messaging.idempotency import ProcessedEvents
from mailroom_shared.messaging.nameko_adapters import (
    BackgroundWorker,
    DatabaseProvider,
    OutboxRelayProvider,
    TopologyProvider,
    database_url_for,
    reliable_event_handler,
)
from mailroom_shared.messaging.outbox import Outbox

log = logging.getLogger(__name__)
OUTBOX = Outbox(outbox)
PROCESSED = ProcessedEvents(processed_events)
INTAKE_ROLE = "intake"  # may POST raw mail (providers' inbound webhooks), besides super admins


# --- access (docs/access.md): ingest keeps no inbox access settings. A stored message is read
# with a download token that conversations signs for that message after checking the inbox
# (its URLs carry it), or by a user who may view every inbox (account_access, super_admin).

def require_post_access(request) -> None:
    principal = auth.authenticate(request)
    if not (principal.super_admin or INTAKE_ROLE in principal.roles):
        raise Forbidden(f"posting raw mail needs the super_admin or {INTAKE_ROLE} role")


def require_read_access(request, intake_id: str) -> None:
    token = request.args.get("access")
    if token:
        auth.verify_blob_access(token, intake_id)
        return
    if auth.bearer_token(request) is None:
        raise Unauthorized("sign in, or use the link from the message (GET /api/messages/{id})")
    if not auth.authenticate(request).sees_every_inbox:
        raise NotFound(f"no message {intake_id}: open it through /api/messages/{{id}} for a download link")


class BlobStoreProvider(DependencyProvider):
    def setup(self):
        self.store = DirectoryBlobStore(ingest_config.blob_dir())

    def get_dependency(self, worker_ctx):
        return self.store


class _NoNotification(Exception):
    """No NOTIFY within the listener's wait: look at `_stopping` and wait again."""


class IntakeProcessor(BackgroundWorker):
    """Turns stored intake rows into `message_received`: woken after an HTTP/IMAP accept, by
    PostgreSQL NOTIFY when the SMTP listener process stores mail, and polling as the fallback."""

    identifier = "ingest.intake_processor"

    def start(self):
        super().start()
        if is_postgres(self.database.engine):
            self.container.spawn_managed_thread(self._listen, identifier="ingest.intake_listener")

    def _listen(self):
        """LISTEN for the SMTP listener's NOTIFY and wake the processor: mail is picked up at once
        instead of at the next poll. Any trouble: reconnect after a pause (the poll still runs)."""
        while not self._stopping:
            connection = None
            try:
                fairy = self.database.engine.raw_connection()
                fairy.detach()  # a long-lived connection of its own, not the pool's
                connection = fairy.dbapi_connection
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute(f"LISTEN {intake.INTAKE_NOTIFY_CHANNEL}")
                while not self._stopping:
                    try:
                        trampoline(connection.fileno(), read=True, timeout=5.0, timeout_exc=_NoNotification)
                    except _NoNotification:
                        continue
                    connection.poll()
                    if connection.notifies:
                        connection.notifies.clear()
                        self.wake()
            except Exception:
                log.warning("intake notifications unavailable; polling every %.1f s meanwhile", self.poll_interval,
                            exc_info=True)
                eventlet.sleep(5.0)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):  # already broken
                        connection.close()

    def setup(self):
        # the container's own (bound) relay, to publish as soon as a message is processed
        self.relay = next(d for d in self.container.dependencies if isinstance(d, OutboxRelayProvider))
        self.database = Database(database_url_for(self.container, SERVICE_NAME))
        self.blobs = DirectoryBlobStore(ingest_config.blob_dir())
        self.settings = ingest_config.intake_settings()
        self.directory = intake.InboxDirectory()
        # on PostgreSQL the SMTP listener's NOTIFY wakes us; the poll is only the fallback there
        self.poll_interval = config.env_float("INGEST_INTAKE_POLL_SECONDS",
                                              1.0 if is_postgres(self.database.engine) else 0.1)
        self.batch_size = max(1, config.env_int("INGEST_INTAKE_BATCH", 16))
        self._limit = self.batch_size

    def work_once(self) -> bool:
        try:
            done = intake.process_batch(self.database, self.blobs, OUTBOX, self.settings, self.directory,
                                        limit=self._limit)
        except Exception:
            # one message at a time until a batch succeeds: a row whose commit fails cannot hold
            # back the others for longer than one pass
            self._limit = 1
            raise
        self._limit = self.batch_size
        if done:
            self.relay.wake()  # publish this batch while the next one is parsed
        return done > 0

    def after_work(self, done: int) -> None:
        self.relay.wake()

    def stop(self):
        self._stopping = True
        self.database.dispose()


class IngestService:
    name = SERVICE_NAME

    topology = TopologyProvider()
    db = DatabaseProvider(SERVICE_NAME)
    relay = OutboxRelayProvider(SERVICE_NAME, lambda: outbox)
    blobs = BlobStoreProvider()
    process_intake = IntakeProcessor()

    @reliable_event_handler("conversations", "inbox_updated")
    def handle_inbox_updated(self, envelope):
        data = parse_envelope(envelope, "inbox_updated")
        PROCESSED.run_once(self.db, envelope, "handle_inbox_updated", lambda session: intake.replace_inbox(
            session, data["inbox_id"], data["channel_addresses"], data["member_emails"]))

    @timer(interval=config.env_float("INGEST_IMAP_POLL_SECONDS", 30.0))
    def poll_mailboxes(self):
        settings = ingest_config.intake_settings()
        for mailbox, channel in ingest_config.mailboxes():
            result = mailboxes.poll(self.db, self.blobs, OUTBOX, mailbox, channel, settings)
            if result.fetched:
                self.process_intake()
        self.relay.wake()

    @http("GET", "/health/ingest")
    def health(self, request):
        response = health_response(self.db, SERVICE_NAME)
        if response.status_code == 200:  # also say whether inbox addresses have arrived yet
            with self.db.transaction() as session:
                body = {**json.loads(response.get_data()), "channels": len(intake.known_channels(session))}
            response.set_data(json.dumps(body))
        return response

    @http("POST", "/api/ingest/channels/<string:address>/messages")
    @json_endpoint
    def post_raw_message(self, request, address):
        """A raw RFC 5322 message for one channel (providers' inbound webhooks, operators)."""
        require_post_access(request)
        settings = ingest_config.intake_settings()
        if request.content_length and request.content_length > settings.max_message_bytes:
            raise PayloadTooLarge(f"message exceeds the {settings.max_message_bytes} byte limit")
        raw = request.get_data(cache=False)
        if not raw.strip():
            raise HttpError("empty body: send the raw RFC 5322 message as the request body")
        try:
            result = intake.accept(self.db, self.blobs, raw, [address], "http", settings)
        except intake.MessageTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from exc
        if result.unknown_recipients:
            raise NotFound(f"{address} is not an inbox channel address")
        self.process_intake()
        if result.duplicates and not result.intake_ids:
            return 200, {"intake_ids": [], "duplicate": True}
        return 202, {"intake_ids": result.intake_ids, "duplicate": False}

    @http("GET", "/api/ingest/messages/<string:intake_id>")
    @json_endpoint
    def get_intake(self, request, intake_id):
        """Operators: what happened to a received message (processed, quarantined and why)."""
        require_read_access(request, intake_id)
        with self.db.transaction() as session:
            row = session.get(Intake, intake_id)
            if row is None:
                raise NotFound(f"no message {intake_id}")
            return {"id": row.id, "channel_address": row.channel_address, "via": row.via, "status": row.status,
                    "reason": row.reason, "size": row.size, "received_at": row.received_at,
                    "raw_url": intake.raw_url(row.id)}

    @http("GET", "/api/ingest/messages/<string:intake_id>/raw")
    @json_endpoint
    def get_raw_message(self, request, intake_id):
        require_read_access(request, intake_id)
        with self.db.transaction() as session:
            row = session.get(Intake, intake_id)
            if row is None:
                raise NotFound(f"no message {intake_id}")
            blob_key = row.blob_key
        return Response(self.blobs.get(blob_key), mimetype="message/rfc822", headers={
            "Content-Disposition": f'attachment; filename="{intake_id}.eml"',
            "X-Content-Type-Options": "nosniff"})

    @http("GET", "/api/ingest/messages/<string:intake_id>/attachments/<string:sha256>")
    @json_endpoint
    def get_attachment(self, request, intake_id, sha256):
        require_read_access(request, intake_id)
        with self.db.transaction() as session:
            row = session.get(Intake, intake_id)
            meta = next((a for a in (row.attachments or []) if a.get("sha256") == sha256), None) if row else None
            if meta is None:
                raise NotFound(f"no attachment {sha256} on message {intake_id}")
            raw_key = row.blob_key
        try:
            payload = self.blobs.get(sha256)
        except BlobNotFound:
            # attachments are stored without fsync (intake.py): after a crash, extract it again
            payload = intake.restore_attachment(self.blobs, raw_key, sha256)
            if payload is None:
                raise NotFound("attachment bytes are missing from the blob store") from None
        # Served as a download, never rendered by the browser in our origin.
        inline_image = meta["content_type"].startswith("image/") and meta["content_type"] != "image/svg+xml"
        disposition = "inline" if inline_image else "attachment"
        return Response(payload, mimetype=meta["content_type"] if inline_image else "application/octet-stream",
                        headers={"Content-Disposition": f'{disposition}; filename="{_ascii(meta["filename"])}"',
                                 "X-Content-Type-Options": "nosniff",
                                 "Content-Security-Policy": "default-src 'none'; sandbox"})

    @rpc
    def render_html(self, intake_id, allow_remote_images=False):
        """The sanitised HTML preview of a stored message, re-made from the raw bytes (for
        conversations' `GET /api/messages/{id}?images=load`, after its access check)."""
        with self.db.transaction() as session:
            row = session.get(Intake, intake_id)
            if row is None:
                raise NotFound(f"no message {intake_id}")
            blob_key, stored = row.blob_key, list(row.attachments or [])
        settings = ingest_config.intake_settings()
        parsed = parse_message(self.blobs.get(blob_key), settings.limits)
        cid_urls = {a["content_id"]: a["url"] for a in stored if a.get("content_id") and a.get("url")}
        if not parsed.html:
            return {"html": None, "truncated": False, "remote_images_blocked": 0}
        sanitised = sanitize_html(parsed.html, cid_urls, allow_remote_images=bool(allow_remote_images))
        html, truncated = html_preview(sanitised.html, settings.html_preview_bytes)
        return {"html": html, "truncated": truncated, "remote_images_blocked": sanitised.remote_images_blocked}


def _ascii(name: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name) or "attachment"
