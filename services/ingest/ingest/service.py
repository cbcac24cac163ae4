"""The ingest service's nameko entrypoints: the raw-MIME HTTP endpoint, status and downloads of
stored messages, the HTML preview RPC, inbox updates and the IMAP poll timer; the intake
processor (intake.py) turns stored mail into events. The SMTP listener is its own process
(smtp_listener.py) writing to the same database and blob store."""

from __future__ import annotations

import json

from nameko.rpc import rpc
from werkzeug.wrappers import Response

from ingest import SERVICE_NAME, erasure, full_message, handlers, mailbox_api, mailboxes, models, queries, settings
from ingest.access import require_operator_act, require_operator_view, require_post_access, require_read_access
from ingest.domain import full_message as page_rules
from ingest.domain.downloads import attachment_download, raw_message_download
from ingest.intake import BlobStoreProvider, IntakeProcessor
from ingest.schemas import RetryRequestSchema
from mailroom_shared.http import PayloadTooLarge, decode_cursor, health_response, page_limit, read_json, schema_instance
from mailroom_shared.kit import consumes, endpoint, service_base

Base = service_base(SERVICE_NAME, models.outbox, models.processed_events, settings.load,
                    publishes={"message_received": 1, "delivery_report_received": 1, "message_quarantined": 1,
                               "mailbox_unreachable": 1, "contact_mail_erased": 1})


class IngestService(Base):
    name = SERVICE_NAME

    blobs = BlobStoreProvider()
    process_intake = IntakeProcessor()

    @consumes("conversations", "inbox_updated")
    def handle_inbox_updated(self, session, data, envelope):
        handlers.replace_inbox(session, data["inbox_id"], data["channel_addresses"], data["member_emails"])

    # GDPR art. 17 (issue #17): the erased contact's raw mail, attachments and intake rows
    @consumes("contacts", "contact_erased")
    def handle_contact_erased(self, session, data, envelope):
        erasure.erase_contact(session, self.blobs, self.outbox, data)

    @mailboxes.every_mailbox_poll
    def poll_mailboxes(self):
        mailboxes.poll_all(self.db, self.blobs, self.outbox, self.settings, fetched=self.process_intake)
        self.relay.wake()

    @endpoint("GET", "/health/ingest", auth=False)
    def health(self, request):
        response = health_response(self.db, SERVICE_NAME)
        if response.status_code != 200:
            return response
        with self.db.transaction() as session:  # also say whether inbox addresses have arrived yet
            return {**json.loads(response.get_data()), "channels": len(queries.known_channels(session))}

    @endpoint("POST", "/api/ingest/channels/<string:address>/messages")
    def post_raw_message(self, request, address):
        """A raw RFC 5322 message for one channel (providers' inbound webhooks, operators)."""
        require_post_access(request.principal)
        if (request.content_length or 0) > self.settings.max_message_bytes:  # refused before reading it
            raise PayloadTooLarge(f"message exceeds the {self.settings.max_message_bytes} byte limit")
        body = handlers.accept_posted(self.db, self.blobs, request.get_data(cache=False), address, self.settings)
        self.process_intake()
        return (200 if body["duplicate"] else 202), body

    @endpoint("GET", "/api/ingest/messages/<string:intake_id>", auth=False)
    def get_intake(self, request, intake_id):
        """Operators: what happened to a received message (processed, quarantined and why)."""
        require_read_access(request, intake_id)
        with self.db.transaction() as session:
            return queries.intake_view(session, intake_id)

    @endpoint("GET", "/api/ingest/messages/<string:intake_id>/raw", auth=False)
    def get_raw_message(self, request, intake_id):
        require_read_access(request, intake_id)
        with self.db.transaction() as session:
            blob_key = queries.raw_blob_key(session, intake_id)
        stream = self.blobs.stream(blob_key)  # in chunks: a 25 MB message is never held whole
        response = Response(stream, **raw_message_download(intake_id))
        response.content_length = stream.size
        return response

    @endpoint("GET", "/api/ingest/messages/<string:intake_id>/view", auth=False)
    def get_message_page(self, request, intake_id):
        """"View full message": the whole message as a sanitised page (full_message.py); `?images=1`
        shows its remote images."""
        token = full_message.access_token(request, intake_id)
        with self.db.transaction() as session:
            blob_key, cid_urls, attachments = full_message.page_source(session, intake_id)
        remote_images = page_rules.images_requested(request.args.get("images"))
        status, page = full_message.render(self.process_intake.analyser, self.settings, intake_id, blob_key,
                                           cid_urls, attachments, token, remote_images)
        return Response(page, status=status, mimetype="text/html",
                        headers=page_rules.response_headers(remote_images and status == 200))

    @endpoint("GET", "/api/ingest/messages/<string:intake_id>/attachments/<string:sha256>", auth=False)
    def get_attachment(self, request, intake_id, sha256):
        require_read_access(request, intake_id)
        with self.db.transaction() as session:
            meta, raw_key = queries.attachment_of(session, intake_id, sha256)
        payload = queries.attachment_bytes(self.blobs, raw_key, sha256)
        return Response(payload, **attachment_download(meta["filename"], meta["content_type"]))

    @endpoint("GET", "/api/ingest/quarantine")
    def list_quarantined(self, request):
        """Operators: messages that could not be processed, newest first, with why."""
        require_operator_view(request.principal)
        with self.db.transaction() as session:
            return queries.quarantined_page(session, decode_cursor(request.args.get("cursor")), page_limit(request))

    @endpoint("POST", "/api/ingest/quarantine/retry")
    def retry_quarantined(self, request):
        """Operators, after an upgrade: run quarantined messages again (those named, or all)."""
        require_operator_act(request.principal)
        body = schema_instance(RetryRequestSchema).load(read_json(request))
        with self.db.transaction() as session:
            taken = handlers.retry_quarantined(session, body["intake_ids"], body["reason_contains"])
        self.process_intake()
        return 202, {"intake_ids": taken}

    # --- connected IMAP mailboxes (mailbox_api.py, docs/mailboxes.md) --------------------------

    @endpoint("GET", "/api/ingest/mailboxes")
    def list_mailboxes(self, request):
        mailbox_api.require_manage(request.principal)
        with self.db.transaction() as session:
            return mailbox_api.list_view(session)

    @endpoint("POST", "/api/ingest/mailboxes")
    def create_mailbox(self, request):
        mailbox_api.require_manage(request.principal)
        body = mailbox_api.read_body(request)
        with self.db.transaction() as session:
            return 201, mailbox_api.create(session, self.settings, body)

    @endpoint("GET", "/api/ingest/mailboxes/<string:mailbox_id>")
    def get_mailbox(self, request, mailbox_id):
        mailbox_api.require_manage(request.principal)
        with self.db.transaction() as session:
            return mailbox_api.get_view(session, mailbox_id)

    @endpoint("PATCH", "/api/ingest/mailboxes/<string:mailbox_id>")
    def update_mailbox(self, request, mailbox_id):
        mailbox_api.require_manage(request.principal)
        body = mailbox_api.read_body(request)
        with self.db.transaction() as session:
            return mailbox_api.update_mailbox(session, self.settings, mailbox_id, body)

    @endpoint("DELETE", "/api/ingest/mailboxes/<string:mailbox_id>")
    def delete_mailbox(self, request, mailbox_id):
        mailbox_api.require_manage(request.principal)
        with self.db.transaction() as session:
            mailbox_api.delete_mailbox(session, mailbox_id)
        return Response(status=204)

    @endpoint("POST", "/api/ingest/mailboxes/<string:mailbox_id>/test")
    def test_mailbox(self, request, mailbox_id):
        """Connect, TLS, log in and select once: {ok, stage, server_answer}."""
        mailbox_api.require_manage(request.principal)
        return mailbox_api.test_connection(self.db, self.settings, mailbox_id)

    @rpc
    def render_html(self, intake_id, allow_remote_images=False):
        """The sanitised HTML preview of a stored message, re-made from the raw bytes (for
        conversations' `GET /api/messages/{id}?images=load`, after its access check)."""
        with self.db.transaction() as session:
            blob_key, cid_urls = queries.html_source(session, intake_id)
        return handlers.render_preview(self.process_intake.analyser, self.settings, blob_key, cid_urls,
                                       bool(allow_remote_images))
