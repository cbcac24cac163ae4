"""nameko adapter of the outbound service: HTTP endpoints, RPC methods, the bounce handler and
the SMTP delivery worker, a few lines each. The rules live in domain/ and handlers.py."""

from __future__ import annotations

import logging

import eventlet
from marshmallow import EXCLUDE
from nameko.exceptions import RemoteError, UnknownService
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy, rpc
from nameko.web.handlers import http
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from mailroom_shared import config
from mailroom_shared.db import Database
from mailroom_shared.events.envelope import parse_envelope
from mailroom_shared.http import (
    Conflict,
    Forbidden,
    HttpError,
    NotFound,
    decode_cursor,
    error_response,
    health_response,
    json_endpoint,
    page_limit,
    read_json,
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
from outbound import SERVICE_NAME, access, handlers, queries, settings, smtp
from outbound.models import Attachment, Email, Snippet, Template, outbox, processed_events
from outbound.schemas import (
    ComposeSchema,
    ForwardSchema,
    RenderInputSchema,
    ReplySchema,
    SnippetInputSchema,
    SnippetUpdateSchema,
    TemplateInputSchema,
    TemplateUpdateSchema,
)

log = logging.getLogger(__name__)
OUTBOX = Outbox(outbox)
PROCESSED = ProcessedEvents(processed_events)


class Unavailable(HttpError):
    status = 503
    code = "unavailable"


class DeliveryWorker(BackgroundWorker):
    """Delivers queued emails over SMTP in a managed green thread: woken after an email is
    queued, and polling for due retries (OUTBOUND_POLL_SECONDS). On SIGTERM the email being
    sent is finished and recorded before the process exits."""

    identifier = "outbound.delivery_worker"

    def __init__(self):
        super().__init__()
        self._busy = 0  # sends in flight

    def setup(self):
        self.relay = next(d for d in self.container.dependencies if isinstance(d, OutboxRelayProvider))
        self.database = Database(database_url_for(self.container, SERVICE_NAME))
        self.settings = settings.load()
        self.default_relay = settings.default_relay()
        self.overrides = settings.relay_overrides()
        self.poll_interval = self.settings.poll_seconds
        # several sends at once (each claims its own email under FOR UPDATE SKIP LOCKED and a
        # lease): one slow relay answer no longer holds back every other email
        self.concurrency = max(1, config.env_int("OUTBOUND_DELIVERY_CONCURRENCY", 4))

    def start(self):
        for n in range(self.concurrency):
            self.container.spawn_managed_thread(self._run, identifier=f"{self.identifier}.{n}")

    def _relay_for(self, from_email: str) -> settings.SmtpRelay:
        return settings.relay_for(from_email, self.overrides, self.default_relay)

    def _relay_name(self, from_email: str) -> str:
        relay = self._relay_for(from_email)
        return f"{relay.host}:{relay.port}"

    def deliver_one(self) -> bool:
        with self.database.transaction() as session:
            claimed = handlers.claim_next(session, OUTBOX, self.settings, self._relay_name)
        if claimed is None:
            return False
        if not claimed.raw:  # failed (attempts used up) instead of claimed
            self.relay.wake()
            return True
        self._busy += 1
        try:
            outcome = smtp.deliver(self._relay_for(claimed.mail_from), claimed.mail_from, claimed.recipients,
                                   claimed.raw, local_hostname=self.settings.message_id_domain)
            log.info("email %s attempt %d: %s %s", claimed.email_id, claimed.attempt, outcome.status,
                     outcome.code or "")
            with self.database.transaction() as session:
                handlers.record_outcome(session, OUTBOX, claimed, outcome, self.settings)
        finally:
            self._busy -= 1
        self.relay.wake()
        return True

    def work_once(self) -> bool:
        return self.deliver_one()

    def stop(self):
        self._stopping = True
        for _ in range(300):  # let an in-flight send finish and be recorded (up to 30 s)
            if not self._busy:
                break
            eventlet.sleep(0.1)
        self.database.dispose()


class SettingsProvider(DependencyProvider):
    def setup(self):
        self.settings = settings.load()

    def get_dependency(self, worker_ctx):
        return self.settings


def _load(schema, body: dict) -> dict:
    return schema().load(body)


class OutboundService:
    name = SERVICE_NAME

    topology = TopologyProvider()
    db = DatabaseProvider(SERVICE_NAME)
    relay = OutboxRelayProvider(SERVICE_NAME, lambda: outbox)
    deliver = DeliveryWorker()
    options = SettingsProvider()
    conversations = RpcProxy("conversations")

    # --- context from conversations (RPC) ----------------------------------------------------

    def _call(self, method: str, *args):
        try:
            with eventlet.Timeout(self.options.rpc_timeout_seconds):
                return getattr(self.conversations, method).call_async(*args).result()
        except eventlet.Timeout as exc:
            raise Unavailable("the conversations service did not answer in time; try again") from exc
        except UnknownService as exc:
            raise Unavailable("the conversations service is not running; try again") from exc
        except RemoteError as exc:
            log.error("conversations.%s failed: %s", method, exc)
            raise Unavailable(f"the conversations service failed: {exc.exc_type}") from exc

    def _inbox(self, inbox_id: str, principal=None) -> dict:
        inbox = self._call("get_inbox_identities", inbox_id, _principal(principal))
        if inbox is None:
            raise NotFound(f"no inbox {inbox_id}")
        if "forbidden" in inbox:
            raise Forbidden(inbox["forbidden"])
        return inbox

    def _context(self, conversation_id: str, message_id: str | None, include_thread: bool = False,
                 principal=None) -> dict:
        context = self._call("get_reply_context", conversation_id, message_id, include_thread, _principal(principal))
        if context is None:
            raise NotFound(f"no conversation {conversation_id}")
        if "forbidden" in context:
            raise Forbidden(context["forbidden"])
        if message_id and context.get("message") is None:
            raise NotFound(f"no message {message_id} in conversation {conversation_id}")
        return context

    # --- sending --------------------------------------------------------------------------------

    def _send(self, kind: str, target: str, body: dict, key: str | None, load_context, prepare) -> tuple[int, dict]:
        try:
            key = handlers.check_idempotency_key(key)
        except handlers.InvalidEmail as exc:
            raise HttpError(str(exc)) from exc
        digest = handlers.request_digest(kind, target, body)
        existing = self._existing(key, digest)
        if existing is not None:
            return 200, existing
        context = load_context()
        try:
            with self.db.transaction() as session:
                existing = self._existing_in(session, key, digest)
                if existing is not None:
                    return 200, existing
                prepared = prepare(session, context, body, self.options)
                email = handlers.queue_email(session, OUTBOX, prepared, self.options, key, digest)
                view = queries.email_view(session, email)
        except handlers.InvalidEmail as exc:
            raise HttpError(str(exc), {"field": exc.field} if exc.field else None) from exc
        except IntegrityError:
            existing = self._existing(key, digest)  # a concurrent request with the same key won
            if existing is None:
                raise
            return 200, existing
        self.relay.wake()
        self.deliver()
        return 202, view

    def _existing(self, key: str | None, digest: str) -> dict | None:
        if not key:
            return None
        with self.db.transaction() as session:
            return self._existing_in(session, key, digest)

    def _existing_in(self, session, key: str | None, digest: str) -> dict | None:
        try:
            email = handlers.find_idempotent(session, key, digest)
        except handlers.IdempotencyConflict as exc:
            raise Conflict(str(exc)) from exc
        return queries.email_view(session, email) if email is not None else None

    def compose_email(self, inbox_id: str, body: dict, key: str | None, principal=None) -> tuple[int, dict]:
        body = _load(ComposeSchema, body)
        return self._send("compose", inbox_id, body, key, lambda: self._inbox(inbox_id, principal),
                          handlers.prepare_compose)

    def reply_email(self, conversation_id: str, body: dict, key: str | None, principal=None) -> tuple[int, dict]:
        body = _load(ReplySchema, body)
        return self._send("reply", conversation_id, body, key,
                          lambda: self._context(conversation_id, body.get("message_id"), principal=principal),
                          handlers.prepare_reply)

    def forward_email(self, conversation_id: str, body: dict, key: str | None, principal=None) -> tuple[int, dict]:
        body = _load(ForwardSchema, body)
        return self._send("forward", conversation_id, body, key,
                          lambda: self._context(conversation_id, body.get("message_id"),
                                                include_thread=not body.get("message_id"), principal=principal),
                          handlers.prepare_forward)

    # --- HTTP: sending ----------------------------------------------------------------------------

    @http("GET", "/health/outbound")
    def health(self, request):
        return health_response(self.db, SERVICE_NAME)

    @http("POST", "/api/outbound/inboxes/<string:inbox_id>/emails")
    @json_endpoint
    def http_compose(self, request, inbox_id):
        request.principal = access.caller(request)
        return self.compose_email(inbox_id, read_json(request), request.headers.get("Idempotency-Key"),
                                  request.principal)

    @http("POST", "/api/outbound/conversations/<string:conversation_id>/replies")
    @json_endpoint
    def http_reply(self, request, conversation_id):
        request.principal = access.caller(request)
        return self.reply_email(conversation_id, read_json(request), request.headers.get("Idempotency-Key"),
                                request.principal)

    @http("GET", "/api/outbound/conversations/<string:conversation_id>/reply-defaults")
    @json_endpoint
    def http_reply_defaults(self, request, conversation_id):
        request.principal = access.caller(request)
        context = self._context(conversation_id, request.args.get("message_id"), principal=request.principal)
        try:
            return handlers.reply_defaults(context, request.args.get("reply_all", "").lower() in ("1", "true", "yes"))
        except handlers.InvalidEmail as exc:
            raise HttpError(str(exc)) from exc

    @http("POST", "/api/outbound/conversations/<string:conversation_id>/forwards")
    @json_endpoint
    def http_forward(self, request, conversation_id):
        request.principal = access.caller(request)
        return self.forward_email(conversation_id, read_json(request), request.headers.get("Idempotency-Key"),
                                  request.principal)

    # --- HTTP: delivery state ----------------------------------------------------------------------

    def _require_view(self, request, *, inbox_id: str | None = None, conversation_id: str | None = None) -> None:
        """Reads follow the inbox's visibility, decided by conversations (404 when not visible)."""
        token = request.headers.get("Authorization", "").partition(" ")[2]
        answer = self.conversations.check_access(token, "view", conversation_id=conversation_id, inbox_id=inbox_id)
        if not answer.get("allowed"):
            error = HttpError(answer.get("message") or "not allowed")
            error.status, error.code = answer.get("status", 404), answer.get("code", "not_found")
            raise error

    @http("GET", "/api/outbound/emails/<string:email_id>")
    @json_endpoint
    def http_get_email(self, request, email_id):
        request.principal = access.caller(request)
        with self.db.transaction() as session:
            email = session.get(Email, email_id)
            inbox_id = email.inbox_id if email else None
        if email is None:
            raise NotFound(f"no email {email_id}")
        self._require_view(request, inbox_id=inbox_id)
        with self.db.transaction() as session:
            return queries.email_view(session, session.get(Email, email_id))

    @http("GET", "/api/outbound/emails/<string:email_id>/attachments/<string:attachment_id>")
    def http_get_attachment(self, request, email_id, attachment_id):
        try:
            request.principal = access.caller(request)
        except HttpError as exc:
            return error_response(exc.status, exc.code, exc.message)
        with self.db.transaction() as session:
            attachment = session.get(Attachment, attachment_id)
            email = session.get(Email, email_id)
            if attachment is None or email is None or attachment.email_id != email_id:
                return error_response(404, "not_found", f"no attachment {attachment_id} of email {email_id}")
            try:
                self._require_view(request, inbox_id=email.inbox_id)
            except HttpError as exc:
                return error_response(exc.status, exc.code, exc.message)
            return Response(attachment.data, mimetype=attachment.content_type, headers={
                "Content-Disposition": "attachment", "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox"})

    @http("GET", "/api/outbound/conversations/<string:conversation_id>/emails")
    @json_endpoint
    def http_conversation_emails(self, request, conversation_id):
        request.principal = access.caller(request)
        self._require_view(request, conversation_id=conversation_id)
        with self.db.transaction() as session:
            return queries.emails_page(session, Email.conversation_id == conversation_id,
                                       decode_cursor(request.args.get("cursor")), page_limit(request))

    @http("GET", "/api/outbound/inboxes/<string:inbox_id>/emails")
    @json_endpoint
    def http_inbox_emails(self, request, inbox_id):
        """Everything sent from an inbox with its delivery state (`?state=failed` …)."""
        request.principal = access.caller(request)
        self._require_view(request, inbox_id=inbox_id)
        where = Email.inbox_id == inbox_id
        state = request.args.get("state")
        if state:
            where = where & (Email.state == state)
        with self.db.transaction() as session:
            return queries.emails_page(session, where, decode_cursor(request.args.get("cursor")),
                                       page_limit(request))

    # --- HTTP: templates and snippets -------------------------------------------------------------

    @http("GET", "/api/outbound/templates")
    @json_endpoint
    def list_templates(self, request):
        request.principal = access.caller(request)
        with self.db.transaction() as session:
            return queries.list_templates(session, request.args.get("inbox_id"))

    @http("POST", "/api/outbound/templates")
    @json_endpoint
    def create_template(self, request):
        request.principal = access.caller(request)
        values = TemplateInputSchema().load(read_json(request))
        return 201, self._save(lambda s: handlers.save_template(s, values), queries.template_view)

    @http("GET", "/api/outbound/templates/<string:template_id>")
    @json_endpoint
    def get_template(self, request, template_id):
        request.principal = access.caller(request)
        with self.db.transaction() as session:
            return queries.template_view(_get(session, Template, template_id, "template"))

    @http("PUT", "/api/outbound/templates/<string:template_id>")
    @json_endpoint
    def update_template(self, request, template_id):
        request.principal = access.caller(request)
        values = TemplateUpdateSchema(partial=True).load(read_json(request))
        return self._save(lambda s: handlers.save_template(s, values, _get(s, Template, template_id, "template")),
                          queries.template_view)

    @http("DELETE", "/api/outbound/templates/<string:template_id>")
    @json_endpoint
    def delete_template(self, request, template_id):
        request.principal = access.caller(request)
        with self.db.transaction() as session:
            session.delete(_get(session, Template, template_id, "template"))
        return 204, None

    @http("POST", "/api/outbound/templates/<string:template_id>/render")
    @json_endpoint
    def render_template(self, request, template_id):
        request.principal = access.caller(request)
        return self._render(request, Template, template_id, "template")

    @http("GET", "/api/outbound/snippets")
    @json_endpoint
    def list_snippets(self, request):
        request.principal = access.caller(request)
        with self.db.transaction() as session:
            return queries.list_snippets(session, request.args.get("inbox_id"))

    @http("POST", "/api/outbound/snippets")
    @json_endpoint
    def create_snippet(self, request):
        request.principal = access.caller(request)
        values = SnippetInputSchema().load(read_json(request))
        return 201, self._save(lambda s: handlers.save_snippet(s, values), queries.snippet_view)

    @http("GET", "/api/outbound/snippets/<string:snippet_id>")
    @json_endpoint
    def get_snippet(self, request, snippet_id):
        request.principal = access.caller(request)
        with self.db.transaction() as session:
            return queries.snippet_view(_get(session, Snippet, snippet_id, "snippet"))

    @http("PUT", "/api/outbound/snippets/<string:snippet_id>")
    @json_endpoint
    def update_snippet(self, request, snippet_id):
        request.principal = access.caller(request)
        values = SnippetUpdateSchema(partial=True).load(read_json(request))
        return self._save(lambda s: handlers.save_snippet(s, values, _get(s, Snippet, snippet_id, "snippet")),
                          queries.snippet_view)

    @http("DELETE", "/api/outbound/snippets/<string:snippet_id>")
    @json_endpoint
    def delete_snippet(self, request, snippet_id):
        request.principal = access.caller(request)
        with self.db.transaction() as session:
            session.delete(_get(session, Snippet, snippet_id, "snippet"))
        return 204, None

    @http("POST", "/api/outbound/snippets/<string:snippet_id>/render")
    @json_endpoint
    def render_snippet(self, request, snippet_id):
        request.principal = access.caller(request)
        return self._render(request, Snippet, snippet_id, "snippet")

    def _save(self, change, view) -> dict:
        try:
            with self.db.transaction() as session:
                return view(change(session))
        except handlers.InvalidEmail as exc:
            raise HttpError(str(exc), {"field": exc.field} if exc.field else None) from exc
        except IntegrityError as exc:
            raise Conflict("a snippet with this shortcut exists") from exc

    def _render(self, request, model, item_id: str, what: str) -> dict:
        args = RenderInputSchema(unknown=EXCLUDE).load(read_json(request))
        contact, conversation, inbox, sender = args.get("contact"), None, None, None
        if args.get("conversation_id"):
            context = self._context(args["conversation_id"], None)
            conversation = {"id": context["conversation"]["id"], "subject": context["conversation"].get("subject"),
                            "reply_address": context.get("reply_address")}
            contact = contact or context["conversation"].get("contact")
            inbox_info = context["inbox"]
            inbox = {"name": inbox_info.get("name"), "address": context.get("channel_address")}
            sender = next((i for i in inbox_info.get("identities") or []
                           if i["email"] == context.get("channel_address")), None)
        elif args.get("inbox_id"):
            inbox_info = self._inbox(args["inbox_id"])
            inbox = {"name": inbox_info.get("name"), "address": inbox_info.get("primary_address")}
        from outbound.domain.templates import token_context

        tokens = token_context(contact=contact, conversation=conversation, inbox=inbox, sender=sender)
        with self.db.transaction() as session:
            item = _get(session, model, item_id, what)
            try:
                return handlers.render_saved(item, tokens, self.options)
            except handlers.InvalidEmail as exc:
                raise HttpError(str(exc), {"field": exc.field} if exc.field else None) from exc

    # --- RPC for other services ---------------------------------------------------------------------

    @rpc
    def compose(self, inbox_id, body, idempotency_key=None):
        """Queue a new email from an inbox (starts a conversation). Returns the email view."""
        return self._rpc(lambda: self.compose_email(inbox_id, body, idempotency_key))

    @rpc
    def reply(self, conversation_id, body, idempotency_key=None):
        return self._rpc(lambda: self.reply_email(conversation_id, body, idempotency_key))

    @rpc
    def forward(self, conversation_id, body, idempotency_key=None):
        return self._rpc(lambda: self.forward_email(conversation_id, body, idempotency_key))

    @rpc
    def get_email(self, email_id):
        with self.db.transaction() as session:
            email = session.get(Email, email_id)
            return queries.email_view(session, email) if email is not None else None

    def _rpc(self, call):
        from marshmallow import ValidationError

        try:
            return call()[1]
        except ValidationError as exc:
            raise HttpError("the request is not valid", exc.messages) from exc

    # --- events ---------------------------------------------------------------------------------------

    @reliable_event_handler("ingest", "message_received")
    def handle_message_received(self, envelope):
        """Bounces (DSNs) are matched to the sent email they return; other mail is not ours."""
        data = parse_envelope(envelope, "message_received")
        if not (data.get("flags") or {}).get("bounce") or not data.get("bounced_message_ids"):
            return
        PROCESSED.run_once(self.db, envelope, "handle_message_received",
                           lambda session: handlers.record_bounce(session, OUTBOX, data))
        self.relay.wake()


def _principal(principal) -> dict | None:
    return principal.as_dict() if principal is not None else None


def _get(session, model, entity_id: str, what: str):
    found = session.get(model, entity_id)
    if found is None:
        raise NotFound(f"no {what} {entity_id}")
    return found
