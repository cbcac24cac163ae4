"""nameko adapter of the conversations service: event handlers and HTTP endpoints, a few lines
each. The rules live in domain.py and handlers.py; reads in queries.py."""

from __future__ import annotations

import logging

import eventlet
from marshmallow import EXCLUDE
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy, rpc
from nameko.web.handlers import http
from sqlalchemy.exc import IntegrityError

# the module, not the class: `nameko run` would take a mixin imported by name for a service
from conversations import SERVICE_NAME, access, handlers, outbound_api, queries, settings
from conversations.models import Conversation, Inbox, Message, Ticket, outbox, processed_events
from conversations.schemas import (
    AssignSchema,
    AttributionSchema,
    CloseSchema,
    CommentCreateSchema,
    CommentSchema,
    ConversationListArgsSchema,
    InboxCreateSchema,
    InboxUpdateSchema,
    MessageArgsSchema,
    MoveSchema,
    TicketInputSchema,
    TicketSchema,
)
from mailroom_shared.auth import Principal, authenticate, verify_token
from mailroom_shared.db import Database
from mailroom_shared.events.envelope import parse_envelope
from mailroom_shared.http import (
    Conflict,
    HttpError,
    NotFound,
    Unauthorized,
    decode_cursor,
    health_response,
    json_endpoint,
    read_json,
)
from mailroom_shared.messaging.idempotency import ProcessedEvents
from mailroom_shared.messaging.nameko_adapters import (
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


def _settings() -> handlers.Settings:
    return handlers.Settings(reply_to_closed=settings.reply_to_closed())


class InboxSeeder(DependencyProvider):
    """Upserts the inboxes of CONVERSATIONS_INBOXES_FILE when the service starts (a bad file or
    setting stops the start). The outbox relay then announces what changed."""

    def setup(self):
        settings.reply_to_closed()  # fail fast on a bad setting
        path = settings.inboxes_file()
        if path is None:
            return
        entries = settings.load_inboxes_file(path)
        database = Database(database_url_for(self.container, SERVICE_NAME))
        try:
            with database.transaction() as session:
                results = handlers.seed_inboxes(session, OUTBOX, entries)
            for inbox, announced in results:
                log.info("inbox %s (%s) seeded from %s%s", inbox.name, inbox.id, path,
                         "; inbox_updated recorded" if announced else "; unchanged")
        finally:
            database.dispose()


def _get(session, model, entity_id: str, what: str):
    found = session.get(model, entity_id)
    if found is None:
        raise NotFound(f"no {what} {entity_id}")
    return found


class ConversationsService(outbound_api.OutboundApi):  # issue #4: outbound_api.py
    name = SERVICE_NAME

    topology = TopologyProvider()
    db = DatabaseProvider(SERVICE_NAME)
    relay = OutboxRelayProvider(SERVICE_NAME, lambda: outbox)
    seeder = InboxSeeder()
    ingest_rpc = RpcProxy("ingest")  # ?images=load: ingest re-sanitises from the raw message

    # --- events -------------------------------------------------------------------------

    @reliable_event_handler("ingest", "message_received")
    def handle_message_received(self, envelope):
        data = parse_envelope(envelope, "message_received")
        PROCESSED.run_once(self.db, envelope, "handle_message_received",
                           lambda session: handlers.receive_message(session, OUTBOX, data, _settings()))
        self.relay.wake()

    @reliable_event_handler("contacts", "contact_created")
    def handle_contact_created(self, envelope):
        data = parse_envelope(envelope, "contact_created")
        PROCESSED.run_once(self.db, envelope, "handle_contact_created",
                           lambda session: handlers.learn_contact(session, data["contact_id"], data["emails"]))

    # --- HTTP: who is calling --------------------------------------------------------------

    def _principal(self, request) -> Principal:
        """401 without a valid token; remembers the user (assignees and @mentions of inboxes
        shared with everyone or with teams are the users seen with a valid token)."""
        principal = authenticate(request)
        try:
            with self.db.transaction() as session:
                handlers.remember_user(session, principal)
        except IntegrityError:  # two first requests of one user at once: the other one wrote it
            pass
        return principal

    # --- HTTP: inboxes ------------------------------------------------------------------

    @http("GET", "/health/conversations")
    def health(self, request):
        return health_response(self.db, SERVICE_NAME)

    @http("GET", "/api/inboxes")
    @json_endpoint
    def list_inboxes(self, request):
        principal = self._principal(request)
        with self.db.transaction() as session:
            return queries.list_inboxes(session, principal)

    @http("GET", "/api/inboxes/<string:inbox_id>")
    @json_endpoint
    def get_inbox(self, request, inbox_id):
        principal = self._principal(request)
        with self.db.transaction() as session:
            inbox = access.require_view(principal, session.get(Inbox, inbox_id), f"no inbox {inbox_id}")
            return queries.inbox_view(inbox, principal)

    @http("POST", "/api/inboxes")
    @json_endpoint
    def create_inbox(self, request):
        principal = self._principal(request)
        access.require_manage(principal)
        body = InboxCreateSchema().load(read_json(request))
        view = self._write_inbox(principal, lambda session: handlers.create_inbox(session, OUTBOX, body))
        return 201, view

    @http("PUT", "/api/inboxes/<string:inbox_id>")
    @json_endpoint
    def update_inbox(self, request, inbox_id):
        principal = self._principal(request)
        access.require_manage(principal)
        body = InboxUpdateSchema().load(read_json(request))
        return self._write_inbox(principal, lambda session: handlers.update_inbox(
            session, OUTBOX, _get(session, Inbox, inbox_id, "inbox"), body))

    def _write_inbox(self, principal, change) -> dict:
        try:
            with self.db.transaction() as session:
                view = queries.inbox_view(change(session), principal)
        except handlers.InvalidInbox as exc:
            raise HttpError(str(exc)) from exc
        except (handlers.InboxConflict, IntegrityError) as exc:  # a concurrent writer took the address
            raise Conflict(str(exc).splitlines()[0]) from exc
        self.relay.wake()
        return view

    # --- HTTP: views ----------------------------------------------------------------------

    @http("GET", "/api/inboxes/<string:inbox_id>/conversations")
    @json_endpoint
    def list_conversations(self, request, inbox_id):
        principal = self._principal(request)
        args = ConversationListArgsSchema(unknown=EXCLUDE).load(request.args.to_dict())
        cursor = decode_cursor(args["cursor"])
        with self.db.transaction() as session:
            access.require_view(principal, session.get(Inbox, inbox_id), f"no inbox {inbox_id}")
            return queries.conversations_page(session, principal, inbox_id, args["view"], cursor, args["limit"])

    @http("GET", "/api/inboxes/<string:inbox_id>/views")
    @json_endpoint
    def inbox_view_counts(self, request, inbox_id):
        principal = self._principal(request)
        with self.db.transaction() as session:
            access.require_view(principal, session.get(Inbox, inbox_id), f"no inbox {inbox_id}")
            return queries.view_counts(session, principal, inbox_id)

    @http("GET", "/api/conversations")
    @json_endpoint
    def list_all_conversations(self, request):
        """A view across every inbox the caller may view."""
        principal = self._principal(request)
        args = ConversationListArgsSchema(unknown=EXCLUDE).load(request.args.to_dict())
        cursor = decode_cursor(args["cursor"])
        with self.db.transaction() as session:
            return queries.conversations_page(session, principal, None, args["view"], cursor, args["limit"])

    @http("GET", "/api/conversations/views")
    @json_endpoint
    def all_view_counts(self, request):
        principal = self._principal(request)
        with self.db.transaction() as session:
            return queries.view_counts(session, principal, None)

    # --- HTTP: conversations and messages -------------------------------------------------

    @http("GET", "/api/conversations/<string:conversation_id>")
    @json_endpoint
    def get_conversation(self, request, conversation_id):
        principal = self._principal(request)
        with self.db.transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            inbox = access.require_view(principal, conversation and session.get(Inbox, conversation.inbox_id),
                                        f"no conversation {conversation_id}")
            return queries.conversation_view(session, conversation, inbox, principal)

    @http("GET", "/api/messages/<string:message_id>")
    @json_endpoint
    def get_message(self, request, message_id):
        principal = self._principal(request)
        args = MessageArgsSchema(unknown=EXCLUDE).load(request.args.to_dict())
        with self.db.transaction() as session:
            message = session.get(Message, message_id)
            access.require_view(principal, message and session.get(Inbox, message.inbox_id),
                                f"no message {message_id}")
            session.expunge(message)
        if args["images"] != "load" or not message.html or not message.intake_id:
            return queries.message_view(message, principal)
        return queries.message_view(message, principal, html=self._html_with_images(message),
                                    remote_images_loaded=True)

    def _html_with_images(self, message) -> str:
        """The message's HTML re-sanitised by ingest from the raw message, remote images allowed
        (the same allow-list otherwise; capped like the stored preview)."""
        try:
            with eventlet.Timeout(15):
                rendered = self.ingest_rpc.render_html.call_async(message.intake_id, True).result()
        except eventlet.Timeout:
            raise ServiceUnavailable("ingest did not answer: try again") from None
        except Exception as exc:
            log.warning("ingest could not re-render message %s: %s", message.id, exc)
            raise ServiceUnavailable("the raw message could not be rendered") from exc
        return rendered["html"] or ""

    def _act(self, request, conversation_id: str, action: str, change):
        """Lock the conversation, check the caller may `action` in its inbox, `change` it, and
        answer its summary (or what `change` returns)."""
        principal = self._principal(request)
        try:
            with self.db.transaction() as session:
                conversation = session.get(Conversation, conversation_id, with_for_update=True)
                inbox = access.require_act(principal, conversation and session.get(Inbox, conversation.inbox_id),
                                           f"no conversation {conversation_id}", action)
                result = change(session, conversation, inbox, principal)
                session.flush()
                view = result if isinstance(result, dict) else queries.conversation_summary(conversation)
        except handlers.ActionRefused as exc:
            raise Conflict(str(exc), exc.details) from exc
        except handlers.InvalidAction as exc:
            raise HttpError(str(exc)) from exc
        self.relay.wake()
        return view

    @http("POST", "/api/conversations/<string:conversation_id>/close")
    @json_endpoint
    def close_conversation(self, request, conversation_id):
        body = CloseSchema().load(read_json(request))
        return self._act(request, conversation_id, "close", lambda session, c, inbox, p: handlers.close_conversation(
            session, OUTBOX, c, closed_by=p.user_id, close_ticket=body["close_ticket"]))

    @http("POST", "/api/conversations/<string:conversation_id>/reopen")
    @json_endpoint
    def reopen_conversation(self, request, conversation_id):
        return self._act(request, conversation_id, "reopen", lambda session, c, inbox, p: handlers.reopen_conversation(
            session, OUTBOX, c, reopened_by=p.user_id))

    @http("POST", "/api/conversations/<string:conversation_id>/assign")
    @json_endpoint
    def assign_conversation(self, request, conversation_id):
        body = AssignSchema().load(read_json(request))
        expected = body.get("expected_assignee_user_id", handlers.UNSET)
        return self._act(request, conversation_id, "assign", lambda session, c, inbox, p: handlers.assign(
            session, OUTBOX, c, inbox, body["assignee_user_id"], p.user_id, expected))

    @http("POST", "/api/conversations/<string:conversation_id>/comments")
    @json_endpoint
    def add_comment(self, request, conversation_id):
        body = CommentCreateSchema().load(read_json(request))
        return 201, self._act(request, conversation_id, "comment", lambda session, c, inbox, p: CommentSchema().dump(
            handlers.add_comment(session, OUTBOX, c, inbox, p, body["body"], body["mentions"])))

    @http("POST", "/api/conversations/<string:conversation_id>/ticket")
    @json_endpoint
    def associate_ticket(self, request, conversation_id):
        body = TicketInputSchema().load(read_json(request))

        def change(session, conversation, inbox, principal):
            ticket = None
            if body["ticket_id"]:
                ticket = session.get(Ticket, body["ticket_id"])
                if ticket is None or not self._may_act_on_ticket(session, principal, ticket):
                    raise NotFound(f"no ticket {body['ticket_id']}")
            ticket = handlers.associate_ticket(session, OUTBOX, conversation, principal.user_id, ticket,
                                               body["subject"])
            return TicketSchema().dump(ticket)

        return self._act(request, conversation_id, "associate a ticket", change)

    @staticmethod
    def _may_act_on_ticket(session, principal, ticket) -> bool:
        """An existing ticket is associated only by who may act on every conversation it has."""
        inboxes = session.query(Inbox).join(Conversation, Conversation.inbox_id == Inbox.id) \
            .filter(Conversation.ticket_id == ticket.id).all()
        return all(access.can_act(principal, inbox) for inbox in inboxes)

    @http("POST", "/api/conversations/<string:conversation_id>/move")
    @json_endpoint
    def move_conversation(self, request, conversation_id):
        body = MoveSchema().load(read_json(request))

        def change(session, conversation, inbox, principal):
            target = access.require_act(principal, session.get(Inbox, body["inbox_id"]),
                                        f"no inbox {body['inbox_id']}", "move conversations into it")
            handlers.move_conversation(session, OUTBOX, conversation, target, principal.user_id)

        return self._act(request, conversation_id, "move", change)

    @http("POST", "/api/conversations/<string:conversation_id>/spam")
    @json_endpoint
    def mark_spam(self, request, conversation_id):
        return self._act(request, conversation_id, "mark spam", lambda session, c, inbox, p: handlers.mark_spam(
            session, OUTBOX, c, True, p.user_id))

    @http("POST", "/api/conversations/<string:conversation_id>/not-spam")
    @json_endpoint
    def mark_not_spam(self, request, conversation_id):
        return self._act(request, conversation_id, "mark not spam", lambda session, c, inbox, p: handlers.mark_spam(
            session, OUTBOX, c, False, p.user_id))

    @http("PUT", "/api/conversations/<string:conversation_id>/messages/<string:message_id>/attribution")
    @json_endpoint
    def correct_attribution(self, request, conversation_id, message_id):
        """A teammate corrects whom a message belongs to (message_attribution_corrected)."""
        body = AttributionSchema().load(read_json(request))
        return self._act(request, conversation_id, "correct attribution",
                         lambda session, c, inbox, p: handlers.correct_attribution(
                             session, OUTBOX, c, message_id, body["email"], body["name"], p.user_id))

    # --- RPC: access checks for the other services' endpoints ------------------------------

    @rpc
    def check_access(self, token, action="view", conversation_id=None, inbox_id=None):
        """For a service whose endpoint acts on a conversation or inbox (outbound: reply, compose,
        forward): `{"allowed": True, "principal": {...}, "inbox_id": ...}` or `{"allowed": False,
        "status": 401|403|404, "message": ...}`; `action` is "view" or a verb ("reply", …)."""
        try:
            principal = verify_token(token or "")
            with self.db.transaction() as session:
                if conversation_id is not None:
                    conversation = session.get(Conversation, conversation_id)
                    inbox = conversation and session.get(Inbox, conversation.inbox_id)
                    missing = f"no conversation {conversation_id}"
                else:
                    inbox, missing = session.get(Inbox, inbox_id) if inbox_id else None, f"no inbox {inbox_id}"
                if action == "view":
                    access.require_view(principal, inbox, missing)
                else:
                    access.require_act(principal, inbox, missing, action)
                return {"allowed": True, "principal": principal.as_dict(), "inbox_id": inbox.id}
        except (Unauthorized, HttpError) as exc:
            return {"allowed": False, "status": exc.status, "code": exc.code, "message": exc.message}


class ServiceUnavailable(HttpError):
    status = 503
    code = "unavailable"
