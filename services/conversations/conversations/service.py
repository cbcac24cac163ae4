"""nameko entrypoints of the conversations service, a few lines each: the events it consumes, its
HTTP API, and the RPC other services ask before they act (outbound: access checks, From
identities and the reply context). The rules are in domain/, the use cases in handlers.py, the
read models in queries.py."""

from __future__ import annotations

import logging

from marshmallow import EXCLUDE
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy, rpc
from werkzeug.wrappers import Response

from conversations import (
    SERVICE_NAME,
    calls,
    connectors,
    contact_corrections,
    handlers,
    ingest_rendering,
    queries,
    settings,
)
from conversations.models import Inbox, outbox, processed_events
from conversations.schemas import (
    AssignSchema,
    AttributionSchema,
    CloseSchema,
    CommentCreateSchema,
    ConnectorChannelCreateSchema,
    ConversationListArgsSchema,
    InboxCreateSchema,
    InboxUpdateSchema,
    MessageArgsSchema,
    MoveSchema,
    TicketInputSchema,
)
from mailroom_shared.auth import verify_token
from mailroom_shared.db import Database
from mailroom_shared.http import HttpError, decode_cursor, health_response, page_limit, read_json, schema_instance
from mailroom_shared.kit import SettingsProvider, consumes, endpoint, service_base
from mailroom_shared.messaging.nameko_adapters import database_url_for

log = logging.getLogger(__name__)

Base = service_base(SERVICE_NAME, outbox, processed_events, settings.load, publishes={
    "inbox_updated": 1, "conversation_created": 1, "message_added": 1, "conversation_reopened": 1,
    "conversation_closed": 1, "ticket_closed": 1, "conversation_assigned": 1, "comment_added": 1,
    "ticket_associated": 1, "conversation_moved": 1, "conversation_spam_marked": 1,
    "message_attribution_corrected": 1, "channel_message_received": 1, "contact_messages_erased": 1,
    "call_logged": 1, "conversation_shared": 1})


class InboxSeeder(DependencyProvider):
    """Upserts the inboxes of the inboxes file (settings.py) when the service starts, before it
    serves anything; the outbox relay then announces what changed."""

    def setup(self):
        settings = SettingsProvider.of(self.container)
        if settings.inboxes_file is None:
            return
        database = Database(database_url_for(self.container, SERVICE_NAME))
        try:
            with database.transaction() as session:
                results = handlers.seed_inboxes(session, Base.outbox, settings.inboxes)
            for inbox, announced in results:
                log.info("inbox %s (%s) seeded from %s%s", inbox.name, inbox.id, settings.inboxes_file,
                         "; inbox_updated recorded" if announced else "; unchanged")
        finally:
            database.dispose()


class ConversationsService(Base):
    name = SERVICE_NAME
    seeder = InboxSeeder()
    ingest_rpc = RpcProxy("ingest")  # ?images=load: ingest re-sanitises from the raw message

    def authenticated_as(self, request, principal):
        """Remembers the user: assignees and @mentions of inboxes shared with everyone or with
        teams are the users seen with a valid token."""
        with self.db.transaction() as session:
            handlers.remember_user(session, principal)
        return principal

    # --- events -------------------------------------------------------------------------

    @consumes("ingest", "message_received")
    def handle_message_received(self, session, data, envelope):
        handlers.receive_message(session, self.outbox, data, self.settings)
        # a merge applied meanwhile (issue #17); receive_message took the turn for it
        contact_corrections.settle_contacts(session, data, turn_taken=True)

    @consumes("ingest", "message_quarantined")
    def handle_message_quarantined(self, session, data, envelope):
        handlers.receive_quarantined(session, self.outbox, data, self.settings)
        contact_corrections.settle_contacts(session, data, turn_taken=True)

    # through the redirects of merged and erased contacts (contact_corrections.py)
    @consumes("contacts", "contact_created")
    def handle_contact_created(self, session, data, envelope):
        contact_corrections.learn_contact(session, data)

    @consumes("contacts", "contact_updated")
    def handle_contact_updated(self, session, data, envelope):
        contact_corrections.update_contact(session, data)

    # contacts' corrections (issue #17, contact_corrections.py)
    @consumes("contacts", "contacts_merged")
    def handle_contacts_merged(self, session, data, envelope):
        contact_corrections.follow_merge(session, data)

    @consumes("contacts", "contact_erased")
    def handle_contact_erased(self, session, data, envelope):
        calls.erase_calls(session, data)  # before the conversations let go of their contact
        contact_corrections.erase_contact(session, self.outbox, data)

    # outbound's delivery events: our email in its conversation, and its delivery state
    @consumes("outbound", "email_queued")
    def handle_email_queued(self, session, data, envelope):
        handlers.store_outbound_email(session, self.outbox, data, "queued", {})

    @consumes("outbound", "email_sent")
    def handle_email_sent(self, session, data, envelope):
        handlers.store_outbound_email(session, self.outbox, data, "sent", {
            "smtp_queue_id": data.get("smtp_queue_id"), "at": data.get("sent_at"), "attempts": data.get("attempts")})

    @consumes("outbound", "email_deferred")
    def handle_email_deferred(self, session, data, envelope):
        handlers.record_delivery_state(session, data, "deferred", {
            "reason": data["reason"], "attempts": data["attempts"], "next_attempt_at": data["next_attempt_at"]})

    @consumes("outbound", "email_failed")
    def handle_email_failed(self, session, data, envelope):
        handlers.record_delivery_state(session, data, "failed", {
            "reason": data["reason"], "attempts": data["attempts"], "smtp_code": data.get("smtp_code")})

    @consumes("outbound", "email_bounced")
    def handle_email_bounced(self, session, data, envelope):
        if not data.get("partial"):  # partial: only `recipients` bounced, the others got it (stays sent)
            handlers.record_delivery_state(session, data, "bounced", {
                "reason": data["reason"], "bounce_intake_id": data["bounce_intake_id"]})
        handlers.record_recipient_bounces(session, data)

    # outbound's chat replies (docs/channels.md): the reply in its conversation, and its state
    @consumes("outbound", "chat_message_queued")
    def handle_chat_message_queued(self, session, data, envelope):
        connectors.store_outbound_chat(session, self.outbox, data, "queued", {})

    @consumes("outbound", "chat_message_sent")
    def handle_chat_message_sent(self, session, data, envelope):
        connectors.store_outbound_chat(session, self.outbox, data, "sent", {
            "at": data["sent_at"], "attempts": data["attempts"], "status": data["status"]})

    @consumes("outbound", "chat_message_failed")
    def handle_chat_message_failed(self, session, data, envelope):
        connectors.record_chat_state(session, data, "failed", {
            "reason": data["reason"], "attempts": data["attempts"], "status": data.get("status")})

    # --- RPC: what other services ask before they act on a conversation or inbox -----------

    @rpc
    def get_chat_connector(self, channel_id):
        """Where outbound delivers replies to a chat channel (its secret sealed); None if unknown."""
        with self.db.transaction() as session:
            return connectors.connector_for_outbound(session, channel_id)

    @rpc
    def check_access(self, token, action="view", conversation_id=None, inbox_id=None):
        """`{"allowed": True, "principal": {...}, "inbox_id": ...}` or `{"allowed": False, "status":
        401|403|404, "message": ...}`; `action` is "view" or a verb ("reply", …)."""
        try:
            principal = verify_token(token or "")
        except HttpError as exc:
            return queries.refused(exc)
        with self.db.transaction() as session:
            return queries.access_answer(session, principal, action, conversation_id, inbox_id)

    @rpc
    def get_inbox_identities(self, inbox_id, principal=None):
        """None when there is no such inbox or the caller may not see it; {"forbidden": reason}
        when the caller (outbound passes the HTTP caller's principal) may view but not send."""
        with self.db.transaction() as session:
            inbox = session.get(Inbox, inbox_id)
            refusal = queries.sending_refusal(principal, inbox)
            if refusal is not None:
                return refusal or None
            return queries.inbox_identities(inbox)

    @rpc
    def get_reply_context(self, conversation_id, message_id=None, include_thread=False, principal=None):
        with self.db.transaction() as session:
            return queries.reply_context_for(session, conversation_id, message_id, bool(include_thread), principal)

    @rpc
    def find_user_by_email(self, email):
        """The mailroom user with this email (Principal.as_dict(), no roles), or None: who a Slack
        user is for notifier (docs/integrations.md)."""
        with self.db.transaction() as session:
            return queries.principal_for_email(session, email)

    @rpc
    def add_comment_as(self, conversation_id, body, principal, comment_id=None):
        """An internal comment by `principal` (as_dict; notifier's Slack `note:`): only the inbox's
        members may (Forbidden/NotFound otherwise); the same `comment_id` again adds nothing."""
        with self.db.transaction() as session:
            comment = handlers.add_comment(session, self.outbox, queries.principal_from_dict(principal),
                                           conversation_id, str(body or "")[:20000], [], comment_id)
            view = queries.comment_view(comment)
        self.relay.wake()
        return view

    # --- HTTP: inboxes ------------------------------------------------------------------

    @endpoint("GET", "/health/conversations", auth=False)
    def health(self, request):
        return health_response(self.db, SERVICE_NAME)

    @endpoint("GET", "/api/inboxes")
    def list_inboxes(self, request):
        with self.db.transaction() as session:
            return queries.list_inboxes(session, request.principal)

    @endpoint("GET", "/api/inboxes/<string:inbox_id>")
    def get_inbox(self, request, inbox_id):
        with self.db.transaction() as session:
            return queries.inbox_view(queries.viewable_inbox(session, request.principal, inbox_id), request.principal)

    @endpoint("POST", "/api/inboxes")
    def create_inbox(self, request):
        handlers.require_manage(request.principal)
        body = schema_instance(InboxCreateSchema).load(read_json(request))
        with self.db.transaction() as session:
            view = queries.inbox_view(handlers.create_inbox(session, self.outbox, body), request.principal)
        self.relay.wake()
        return 201, view

    @endpoint("PUT", "/api/inboxes/<string:inbox_id>")
    def update_inbox(self, request, inbox_id):
        handlers.require_manage(request.principal)
        body = schema_instance(InboxUpdateSchema).load(read_json(request))
        with self.db.transaction() as session:
            view = queries.inbox_view(handlers.update_inbox(session, self.outbox, inbox_id, body), request.principal)
        self.relay.wake()
        return view

    # --- HTTP: chat and form channels (docs/channels.md) -----------------------------------

    @endpoint("POST", "/api/inboxes/<string:inbox_id>/channels")
    def create_connector_channel(self, request, inbox_id):
        handlers.require_manage(request.principal)
        body = schema_instance(ConnectorChannelCreateSchema).load(read_json(request))
        body["webhook_url"] = connectors.check_webhook_url(body.get("webhook_url"), self.settings)
        with self.db.transaction() as session:
            channel, secret = connectors.create_channel(session, request.principal, inbox_id, body, self.settings)
            return 201, connectors.channel_view(channel, secret)

    @endpoint("GET", "/api/inboxes/<string:inbox_id>/channels")
    def list_connector_channels(self, request, inbox_id):
        with self.db.transaction() as session:
            return connectors.list_channels(session, request.principal, inbox_id)

    @endpoint("POST", "/api/channels/<string:channel_id>/messages", auth=False)
    def receive_chat_message(self, request, channel_id):
        """A chat connector's message, signed with the channel's secret (Standard Webhooks)."""
        raw = connectors.read_bounded(request, self.settings)
        answer = connectors.in_transaction(self.db, lambda session: connectors.receive_chat_message(
            session, self.outbox, *connectors.signed_json(session, channel_id, "chat", raw, request.headers,
                                                          self.settings), self.settings))
        self.relay.wake()
        return answer

    @endpoint("POST", "/api/channels/<string:channel_id>/submissions", auth=False)
    def receive_form_submission(self, request, channel_id):
        """A form connector's submission, signed like chat messages."""
        raw = connectors.read_bounded(request, self.settings)
        answer = connectors.in_transaction(self.db, lambda session: connectors.receive_form_submission(
            session, self.outbox, *connectors.signed_json(session, channel_id, "form", raw, request.headers,
                                                          self.settings), self.settings))
        self.relay.wake()
        return answer

    @endpoint("GET", "/api/messages/<string:message_id>/channel-attachments/<string:attachment_id>")
    def get_channel_attachment(self, request, message_id, attachment_id):
        with self.db.transaction() as session:
            file = connectors.channel_attachment(session, request.principal, message_id, attachment_id)
        return Response(file["data"], mimetype=file["content_type"], headers={
            "Content-Disposition": "attachment", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox"})

    # --- HTTP: views ----------------------------------------------------------------------

    @endpoint("GET", "/api/inboxes/<string:inbox_id>/conversations")
    def list_conversations(self, request, inbox_id):
        args = schema_instance(ConversationListArgsSchema, unknown=EXCLUDE).load(request.args.to_dict())
        cursor, q = decode_cursor(args["cursor"]), queries.search_query(args["q"])
        with self.db.transaction() as session:
            queries.viewable_inbox(session, request.principal, inbox_id)
            return queries.conversations_page(session, request.principal, inbox_id, args["view"], cursor,
                                              args["limit"], q)

    @endpoint("GET", "/api/inboxes/<string:inbox_id>/views")
    def inbox_view_counts(self, request, inbox_id):
        with self.db.transaction() as session:
            queries.viewable_inbox(session, request.principal, inbox_id)
            return queries.view_counts(session, request.principal, inbox_id)

    @endpoint("GET", "/api/inboxes/<string:inbox_id>/sent")
    def list_sent(self, request, inbox_id):
        """The inbox's Sent view: our messages, newest first, each with its delivery state."""
        with self.db.transaction() as session:
            queries.viewable_inbox(session, request.principal, inbox_id)
            return queries.sent_page(session, inbox_id, decode_cursor(request.args.get("cursor")),
                                     page_limit(request), request.principal)

    @endpoint("GET", "/api/conversations")
    def list_all_conversations(self, request):
        """A view across every inbox the caller may view."""
        args = schema_instance(ConversationListArgsSchema, unknown=EXCLUDE).load(request.args.to_dict())
        cursor, q = decode_cursor(args["cursor"]), queries.search_query(args["q"])
        with self.db.transaction() as session:
            return queries.conversations_page(session, request.principal, None, args["view"], cursor, args["limit"],
                                              q)

    @endpoint("GET", "/api/conversations/views")
    def all_view_counts(self, request):
        with self.db.transaction() as session:
            return queries.view_counts(session, request.principal, None)

    # --- HTTP: conversations and messages -------------------------------------------------

    @endpoint("GET", "/api/conversations/<string:conversation_id>")
    def get_conversation(self, request, conversation_id):
        with self.db.transaction() as session:
            conversation, inbox = queries.viewable_conversation(session, request.principal, conversation_id)
            return queries.conversation_view(session, conversation, inbox, request.principal)

    @endpoint("GET", "/api/messages/<string:message_id>")
    def get_message(self, request, message_id):
        args = schema_instance(MessageArgsSchema, unknown=EXCLUDE).load(request.args.to_dict())
        with self.db.transaction() as session:
            message = queries.viewable_message(session, request.principal, message_id)
        if args["images"] != "load" or not message.html or not message.intake_id:
            return queries.message_view(message, request.principal)
        return queries.message_view(message, request.principal, remote_images_loaded=True,
                                    html=ingest_rendering.html_with_images(self.ingest_rpc, message))

    # --- HTTP: the caller's own unread state (any viewer, for themselves) --------------------

    @endpoint("POST", "/api/conversations/<string:conversation_id>/read")
    def mark_read(self, request, conversation_id):
        with self.db.transaction() as session:
            queries.mark_read(session, request.principal, conversation_id)
        return Response(status=204)

    @endpoint("POST", "/api/conversations/<string:conversation_id>/unread")
    def mark_unread(self, request, conversation_id):
        with self.db.transaction() as session:
            queries.mark_unread(session, request.principal, conversation_id)
        return Response(status=204)

    # --- HTTP: actions (members of the conversation's inbox only) --------------------------

    @endpoint("POST", "/api/conversations/<string:conversation_id>/close")
    def close_conversation(self, request, conversation_id):
        body = schema_instance(CloseSchema).load(read_json(request))
        with self.db.transaction() as session:
            view = queries.conversation_summary(handlers.close_conversation(
                session, self.outbox, request.principal, conversation_id, body["close_ticket"]))
        self.relay.wake()
        return view

    @endpoint("POST", "/api/conversations/<string:conversation_id>/reopen")
    def reopen_conversation(self, request, conversation_id):
        with self.db.transaction() as session:
            view = queries.conversation_summary(handlers.reopen_conversation(
                session, self.outbox, request.principal, conversation_id))
        self.relay.wake()
        return view

    @endpoint("POST", "/api/conversations/<string:conversation_id>/assign")
    def assign_conversation(self, request, conversation_id):
        body = schema_instance(AssignSchema).load(read_json(request))
        with self.db.transaction() as session:
            view = queries.conversation_summary(handlers.assign(
                session, self.outbox, request.principal, conversation_id, body["assignee_user_id"],
                body.get("expected_assignee_user_id", handlers.UNSET)))
        self.relay.wake()
        return view

    @endpoint("POST", "/api/conversations/<string:conversation_id>/comments")
    def add_comment(self, request, conversation_id):
        body = schema_instance(CommentCreateSchema).load(read_json(request))
        with self.db.transaction() as session:
            view = queries.comment_view(handlers.add_comment(
                session, self.outbox, request.principal, conversation_id, body["body"], body["mentions"]))
        self.relay.wake()
        return 201, view

    # calls from the reply editor (docs/calls.md): members log, viewers list
    @endpoint("POST", "/api/conversations/<string:conversation_id>/calls")
    def log_call(self, request, conversation_id):
        call, key, digest = calls.read_call(read_json(request), request.headers.get("Idempotency-Key"), self.settings)
        with self.db.transaction() as session:
            row, created = calls.log_call(session, self.outbox, request.principal, conversation_id, call, key, digest)
            view = queries.call_view(row)
        self.relay.wake()
        return (201 if created else 200), view

    @endpoint("GET", "/api/conversations/<string:conversation_id>/calls")
    def list_calls(self, request, conversation_id):
        with self.db.transaction() as session:
            conversation, _ = queries.viewable_conversation(session, request.principal, conversation_id)
            return {"items": queries.calls_of(session, conversation.id), "next_cursor": None}

    @endpoint("POST", "/api/conversations/<string:conversation_id>/ticket")
    def associate_ticket(self, request, conversation_id):
        body = schema_instance(TicketInputSchema).load(read_json(request))
        with self.db.transaction() as session:
            view = queries.ticket_view(handlers.associate_ticket(
                session, self.outbox, request.principal, conversation_id, body["ticket_id"], body["subject"]))
        self.relay.wake()
        return view

    @endpoint("POST", "/api/conversations/<string:conversation_id>/move")
    def move_conversation(self, request, conversation_id):
        body = schema_instance(MoveSchema).load(read_json(request))
        with self.db.transaction() as session:
            view = queries.conversation_summary(handlers.move_conversation(
                session, self.outbox, request.principal, conversation_id, body["inbox_id"]))
        self.relay.wake()
        return view

    @endpoint("POST", "/api/conversations/<string:conversation_id>/spam")
    def mark_spam(self, request, conversation_id):
        with self.db.transaction() as session:
            view = queries.conversation_summary(handlers.mark_spam(
                session, self.outbox, request.principal, conversation_id, True))
        self.relay.wake()
        return view

    @endpoint("POST", "/api/conversations/<string:conversation_id>/not-spam")
    def mark_not_spam(self, request, conversation_id):
        with self.db.transaction() as session:
            view = queries.conversation_summary(handlers.mark_spam(
                session, self.outbox, request.principal, conversation_id, False))
        self.relay.wake()
        return view

    @endpoint("PUT", "/api/conversations/<string:conversation_id>/messages/<string:message_id>/attribution")
    def correct_attribution(self, request, conversation_id, message_id):
        """A teammate corrects whom a message belongs to (message_attribution_corrected)."""
        body = schema_instance(AttributionSchema).load(read_json(request))
        with self.db.transaction() as session:
            result = handlers.correct_attribution(session, self.outbox, request.principal, conversation_id,
                                                  message_id, body["email"], body["name"])
        self.relay.wake()
        return result
