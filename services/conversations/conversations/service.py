"""nameko adapter of the conversations service: event handlers and HTTP endpoints, a few lines
each. The rules live in domain.py and handlers.py; reads in queries.py."""

from __future__ import annotations

import logging

from marshmallow import EXCLUDE
from nameko.extensions import DependencyProvider
from nameko.web.handlers import http
from sqlalchemy.exc import IntegrityError

from conversations import SERVICE_NAME, access, handlers, queries, settings
from conversations.models import Conversation, Inbox, Message, outbox, processed_events
from conversations.schemas import ConversationListArgsSchema, InboxCreateSchema, InboxUpdateSchema
from mailroom_shared import config
from mailroom_shared.db import Database
from mailroom_shared.events.envelope import parse_envelope
from mailroom_shared.http import (
    Conflict,
    HttpError,
    NotFound,
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
        url = self.container.config.get("DATABASE_URLS", {}).get(SERVICE_NAME) or config.database_url(SERVICE_NAME)
        database = Database(url)
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


class ConversationsService:
    name = SERVICE_NAME

    topology = TopologyProvider()
    db = DatabaseProvider(SERVICE_NAME)
    relay = OutboxRelayProvider(SERVICE_NAME, lambda: outbox)
    seeder = InboxSeeder()

    # --- events -------------------------------------------------------------------------

    @reliable_event_handler("ingest", "message_received")
    def handle_message_received(self, envelope):
        data = parse_envelope(envelope, "message_received")
        with self.db.transaction() as session:
            if PROCESSED.claim(session, envelope, "handle_message_received"):
                handlers.receive_message(session, OUTBOX, data, _settings())
        self.relay.wake()

    @reliable_event_handler("contacts", "contact_created")
    def handle_contact_created(self, envelope):
        data = parse_envelope(envelope, "contact_created")
        with self.db.transaction() as session:
            if PROCESSED.claim(session, envelope, "handle_contact_created"):
                handlers.learn_contact(session, data["contact_id"], data["emails"])

    # --- HTTP: inboxes ------------------------------------------------------------------

    @http("GET", "/health/conversations")
    def health(self, request):
        return health_response(self.db, SERVICE_NAME)

    @http("GET", "/api/inboxes")
    @json_endpoint
    def list_inboxes(self, request):
        access.authorize(request, access.VIEW_INBOXES)
        with self.db.transaction() as session:
            return queries.list_inboxes(session)

    @http("GET", "/api/inboxes/<string:inbox_id>")
    @json_endpoint
    def get_inbox(self, request, inbox_id):
        access.authorize(request, access.VIEW_INBOXES, inbox_id)
        with self.db.transaction() as session:
            return queries.inbox_view(_get(session, Inbox, inbox_id, "inbox"))

    @http("POST", "/api/inboxes")
    @json_endpoint
    def create_inbox(self, request):
        access.authorize(request, access.MANAGE_INBOXES)
        body = InboxCreateSchema().load(read_json(request))
        view = self._write_inbox(lambda session: handlers.create_inbox(session, OUTBOX, body))
        return 201, view

    @http("PUT", "/api/inboxes/<string:inbox_id>")
    @json_endpoint
    def update_inbox(self, request, inbox_id):
        access.authorize(request, access.MANAGE_INBOXES, inbox_id)
        body = InboxUpdateSchema().load(read_json(request))
        return self._write_inbox(lambda session: handlers.update_inbox(
            session, OUTBOX, _get(session, Inbox, inbox_id, "inbox"), body))

    def _write_inbox(self, change) -> dict:
        try:
            with self.db.transaction() as session:
                view = queries.inbox_view(change(session))
        except handlers.InvalidInbox as exc:
            raise HttpError(str(exc)) from exc
        except (handlers.InboxConflict, IntegrityError) as exc:  # a concurrent writer took the address
            raise Conflict(str(exc).splitlines()[0]) from exc
        self.relay.wake()
        return view

    # --- HTTP: conversations and messages -------------------------------------------------

    @http("GET", "/api/inboxes/<string:inbox_id>/conversations")
    @json_endpoint
    def list_conversations(self, request, inbox_id):
        access.authorize(request, access.VIEW_CONVERSATIONS, inbox_id)
        args = ConversationListArgsSchema(unknown=EXCLUDE).load(request.args.to_dict())
        cursor = decode_cursor(args["cursor"])
        with self.db.transaction() as session:
            _get(session, Inbox, inbox_id, "inbox")
            return queries.conversations_page(session, inbox_id, args["view"], cursor, args["limit"])

    @http("GET", "/api/conversations/<string:conversation_id>")
    @json_endpoint
    def get_conversation(self, request, conversation_id):
        with self.db.transaction() as session:
            conversation = _get(session, Conversation, conversation_id, "conversation")
            access.authorize(request, access.VIEW_CONVERSATIONS, conversation.inbox_id)
            return queries.conversation_view(session, conversation)

    @http("GET", "/api/messages/<string:message_id>")
    @json_endpoint
    def get_message(self, request, message_id):
        with self.db.transaction() as session:
            message = _get(session, Message, message_id, "message")
            access.authorize(request, access.VIEW_CONVERSATIONS, message.inbox_id)
            return queries.message_view(message)

    @http("POST", "/api/conversations/<string:conversation_id>/close")
    @json_endpoint
    def close_conversation(self, request, conversation_id):
        return self._change_status(request, conversation_id, handlers.close_conversation)

    @http("POST", "/api/conversations/<string:conversation_id>/reopen")
    @json_endpoint
    def reopen_conversation(self, request, conversation_id):
        return self._change_status(request, conversation_id, handlers.reopen_conversation)

    def _change_status(self, request, conversation_id, change) -> dict:
        with self.db.transaction() as session:
            conversation = session.get(Conversation, conversation_id, with_for_update=True)
            if conversation is None:
                raise NotFound(f"no conversation {conversation_id}")
            access.authorize(request, access.ACT_ON_CONVERSATIONS, conversation.inbox_id)
            change(session, OUTBOX, conversation)
            view = queries.conversation_summary(conversation)
        self.relay.wake()
        return view

