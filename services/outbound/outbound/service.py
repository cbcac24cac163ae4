"""The outbound service's nameko entrypoints: HTTP (sending, delivery state, templates and snippets),
RPC for other services, and the bounce handler; plus its own providers: the delivery worker and
its client of conversations. Use cases are in handlers.py, reads in queries.py, rules in domain/.

Every HTTP route but the health check authenticates the caller (`request.principal`); whether the
caller may send from or view an inbox is decided by conversations (conversations_client.py).
"""

from __future__ import annotations

from marshmallow import EXCLUDE, ValidationError
from nameko.rpc import rpc
from werkzeug.wrappers import Response

from mailroom_shared.auth import Principal, bearer_token
from mailroom_shared.http import (
    HttpError,
    decode_cursor,
    get_or_404,
    health_response,
    page_limit,
    read_json,
    schema_instance,
)
from mailroom_shared.kit import consumes, endpoint, service_base
from outbound import SERVICE_NAME, auto_ack, erasure, handlers, models, queries, settings, suppressions
from outbound.chat_delivery import ChatDeliveryWorker
from outbound.conversations_client import ConversationsClient
from outbound.delivery_worker import DeliveryWorker
from outbound.handlers import SNIPPETS, TEMPLATES
from outbound.models import Email
from outbound.schemas import (
    RenderInputSchema,
    SnippetInputSchema,
    SnippetUpdateSchema,
    TemplateInputSchema,
    TemplateUpdateSchema,
)

PUBLISHES = {"email_queued": 1, "email_sent": 1, "email_deferred": 1, "email_failed": 1, "email_bounced": 1,
             "chat_message_queued": 1, "chat_message_sent": 1, "chat_message_failed": 1,
             "contact_sent_mail_erased": 1}

Base = service_base(SERVICE_NAME, models.outbox, models.processed_events, settings.load, publishes=PUBLISHES)


class OutboundService(Base):
    name = SERVICE_NAME

    deliver = DeliveryWorker()
    deliver_chat = ChatDeliveryWorker()  # replies to chat conversations (chat_replies.py)
    conversations = ConversationsClient()

    # --- HTTP: sending ----------------------------------------------------------------------------

    @endpoint("GET", "/health/outbound", auth=False)
    def health(self, request):
        return health_response(self.db, SERVICE_NAME)

    @endpoint("POST", "/api/outbound/inboxes/<string:inbox_id>/emails")
    def http_compose(self, request, inbox_id):
        return self._send("compose", inbox_id, read_json(request), request.headers.get("Idempotency-Key"),
                          request.principal)

    @endpoint("POST", "/api/outbound/conversations/<string:conversation_id>/replies")
    def http_reply(self, request, conversation_id):
        return self._send("reply", conversation_id, read_json(request), request.headers.get("Idempotency-Key"),
                          request.principal)

    @endpoint("GET", "/api/outbound/conversations/<string:conversation_id>/reply-defaults")
    def http_reply_defaults(self, request, conversation_id):
        context = self.conversations.reply_context(conversation_id, request.args.get("message_id"),
                                                   principal=request.principal)
        return queries.reply_defaults(context, request.args.get("reply_all", "").lower() in ("1", "true", "yes"))

    @endpoint("POST", "/api/outbound/conversations/<string:conversation_id>/forwards")
    def http_forward(self, request, conversation_id):
        return self._send("forward", conversation_id, read_json(request), request.headers.get("Idempotency-Key"),
                          request.principal)

    def _send(self, kind, target, body, key, principal=None):
        status, view = handlers.send(self.db, self.outbox, self.settings, self.conversations, kind, target, body,
                                     key, principal)
        if status == 202:
            self.relay.wake()
            # only the worker with something new to claim: waking both cost the other an empty
            # claim transaction per email (issue #16)
            if view.get("kind") == "chat_reply":
                self.deliver_chat()
            else:
                self.deliver()
        return status, view

    # --- HTTP: delivery state ----------------------------------------------------------------------

    @endpoint("GET", "/api/outbound/emails/<string:email_id>")
    def http_get_email(self, request, email_id):
        with self.db.transaction() as session:
            inbox_id = get_or_404(session, Email, email_id, "email").inbox_id
        self.conversations.require_view(bearer_token(request), inbox_id=inbox_id)
        with self.db.transaction() as session:
            return queries.email_view(session, session.get(Email, email_id))

    @endpoint("GET", "/api/outbound/emails/<string:email_id>/attachments/<string:attachment_id>")
    def http_get_attachment(self, request, email_id, attachment_id):
        with self.db.transaction() as session:
            file = queries.attachment_file(session, email_id, attachment_id)
        self.conversations.require_view(bearer_token(request), inbox_id=file["inbox_id"])
        return Response(file["data"], mimetype=file["content_type"], headers={
            "Content-Disposition": "attachment", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox"})

    @endpoint("GET", "/api/outbound/conversations/<string:conversation_id>/emails")
    def http_conversation_emails(self, request, conversation_id):
        self.conversations.require_view(bearer_token(request), conversation_id=conversation_id)
        with self.db.transaction() as session:
            return queries.conversation_emails(session, conversation_id, decode_cursor(request.args.get("cursor")),
                                               page_limit(request))

    @endpoint("GET", "/api/outbound/inboxes/<string:inbox_id>/emails")
    def http_inbox_emails(self, request, inbox_id):
        """Everything sent from an inbox with its delivery state (`?state=failed` …)."""
        self.conversations.require_view(bearer_token(request), inbox_id=inbox_id)
        with self.db.transaction() as session:
            return queries.inbox_emails(session, inbox_id, request.args.get("state"),
                                        decode_cursor(request.args.get("cursor")), page_limit(request))

    # --- HTTP: the suppression list (per inbox: suppressions.py) ----------------------------------

    @endpoint("GET", "/api/outbound/inboxes/<string:inbox_id>/suppressions")
    def http_list_suppressions(self, request, inbox_id):
        self.conversations.require_view(bearer_token(request), inbox_id=inbox_id)
        include_lifted = request.args.get("include_lifted", "").lower() in ("1", "true", "yes")
        with self.db.transaction() as session:
            return suppressions.list_page(session, inbox_id, include_lifted,
                                          decode_cursor(request.args.get("cursor")), page_limit(request))

    @endpoint("DELETE", "/api/outbound/inboxes/<string:inbox_id>/suppressions/<string:address>")
    def http_lift_suppression(self, request, inbox_id, address):
        self.conversations.inbox(inbox_id, request.principal)  # 404 not visible, 403 a viewer (not a member)
        with self.db.transaction() as session:
            suppressions.lift(session, inbox_id, address, request.principal)
        return 204, None

    # --- HTTP: automatic acknowledgement per inbox (auto_ack.py) ---------------------------------

    @endpoint("GET", "/api/outbound/inboxes/<string:inbox_id>/auto-acknowledgement")
    def http_get_auto_ack(self, request, inbox_id):
        self.conversations.require_view(bearer_token(request), inbox_id=inbox_id)
        with self.db.transaction() as session:
            return auto_ack.read(session, inbox_id)

    @endpoint("PUT", "/api/outbound/inboxes/<string:inbox_id>/auto-acknowledgement")
    def http_put_auto_ack(self, request, inbox_id):
        self.conversations.inbox(inbox_id, request.principal)  # members only (403 a viewer, 404 not visible)
        with self.db.transaction() as session:
            return auto_ack.write(session, inbox_id, read_json(request), request.principal)

    # --- HTTP: templates and snippets (each checks the item's owner scope: domain/scopes.py) --------

    @endpoint("GET", "/api/outbound/templates")
    def list_templates(self, request):
        return handlers.list_saved(self.db, self.conversations, TEMPLATES, request.principal,
                                   request.args.get("inbox_id"))

    @endpoint("POST", "/api/outbound/templates")
    def create_template(self, request):
        values = schema_instance(TemplateInputSchema).load(read_json(request))
        return 201, handlers.create_saved(self.db, self.conversations, TEMPLATES, values, request.principal)

    @endpoint("GET", "/api/outbound/templates/<string:template_id>")
    def get_template(self, request, template_id):
        return handlers.read_saved(self.db, self.conversations, TEMPLATES, template_id, request.principal)

    @endpoint("PUT", "/api/outbound/templates/<string:template_id>")
    def update_template(self, request, template_id):
        values = schema_instance(TemplateUpdateSchema, partial=True).load(read_json(request))
        return handlers.update_saved(self.db, self.conversations, TEMPLATES, template_id, values, request.principal)

    @endpoint("DELETE", "/api/outbound/templates/<string:template_id>")
    def delete_template(self, request, template_id):
        handlers.delete_saved(self.db, self.conversations, TEMPLATES, template_id, request.principal)
        return 204, None

    @endpoint("POST", "/api/outbound/templates/<string:template_id>/render")
    def render_template(self, request, template_id):
        args = schema_instance(RenderInputSchema, unknown=EXCLUDE).load(read_json(request))
        return handlers.render_saved(self.db, self.conversations, TEMPLATES, template_id, args, request.principal,
                                     self.settings)

    @endpoint("GET", "/api/outbound/snippets")
    def list_snippets(self, request):
        return handlers.list_saved(self.db, self.conversations, SNIPPETS, request.principal,
                                   request.args.get("inbox_id"))

    @endpoint("POST", "/api/outbound/snippets")
    def create_snippet(self, request):
        values = schema_instance(SnippetInputSchema).load(read_json(request))
        return 201, handlers.create_saved(self.db, self.conversations, SNIPPETS, values, request.principal)

    @endpoint("GET", "/api/outbound/snippets/<string:snippet_id>")
    def get_snippet(self, request, snippet_id):
        return handlers.read_saved(self.db, self.conversations, SNIPPETS, snippet_id, request.principal)

    @endpoint("PUT", "/api/outbound/snippets/<string:snippet_id>")
    def update_snippet(self, request, snippet_id):
        values = schema_instance(SnippetUpdateSchema, partial=True).load(read_json(request))
        return handlers.update_saved(self.db, self.conversations, SNIPPETS, snippet_id, values, request.principal)

    @endpoint("DELETE", "/api/outbound/snippets/<string:snippet_id>")
    def delete_snippet(self, request, snippet_id):
        handlers.delete_saved(self.db, self.conversations, SNIPPETS, snippet_id, request.principal)
        return 204, None

    @endpoint("POST", "/api/outbound/snippets/<string:snippet_id>/render")
    def render_snippet(self, request, snippet_id):
        args = schema_instance(RenderInputSchema, unknown=EXCLUDE).load(read_json(request))
        return handlers.render_saved(self.db, self.conversations, SNIPPETS, snippet_id, args, request.principal,
                                     self.settings)

    # --- RPC for other services --------------------------------------------------------------------

    @rpc
    def compose(self, inbox_id, body, idempotency_key=None):
        """Queue a new email from an inbox (starts a conversation). Returns the email view."""
        return self._rpc_send("compose", inbox_id, body, idempotency_key)

    @rpc
    def reply(self, conversation_id, body, idempotency_key=None, principal=None):
        """`principal` (Principal.as_dict(); notifier's replies from Slack threads): the reply is
        that user's, and the inbox's access rules apply to them (Forbidden/NotFound)."""
        return self._rpc_send("reply", conversation_id, body, idempotency_key, principal)

    @rpc
    def forward(self, conversation_id, body, idempotency_key=None):
        return self._rpc_send("forward", conversation_id, body, idempotency_key)

    @rpc
    def get_email(self, email_id):
        with self.db.transaction() as session:
            return queries.email_or_none(session, email_id)

    def _rpc_send(self, kind, target, body, key, principal=None):
        try:
            return self._send(kind, target, body, key, principal and Principal(
                user_id=principal["user_id"], email=principal.get("email"),
                team_ids=frozenset(principal.get("team_ids") or ()), roles=frozenset(principal.get("roles") or ())))[1]
        except ValidationError as exc:
            raise HttpError("the request is not valid", exc.messages) from exc

    # --- events ------------------------------------------------------------------------------------

    @consumes("conversations", "conversation_created", when=lambda data: not data.get("spam"))
    def handle_conversation_created(self, session, data, envelope):
        """A new conversation: the inbox's automatic acknowledgement, if enabled (auto_ack.py)."""
        setting = auto_ack.enabled_for(session, data["inbox_id"])
        if setting is not None:
            context = self.conversations.reply_context(data["conversation_id"], None)
            auto_ack.acknowledge(session, self.outbox, self.settings, setting, context, data)

    @consumes("contacts", "contact_erased")
    def handle_contact_erased(self, session, data, envelope):
        """GDPR art. 17 (issue #17): the content of what was sent to the erased contact (erasure.py)."""
        erasure.erase_contact(session, self.outbox, data)

    @consumes("ingest", "delivery_report_received")
    def handle_delivery_report_received(self, session, data, envelope):
        """A bounce (DSN) is matched to the sent emails it returns. ingest publishes this small event
        for bounces only: outbound no longer takes every inbound message to find them (#16)."""
        handlers.record_bounce(session, self.outbox, data)
