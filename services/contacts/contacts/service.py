"""nameko adapter of the contacts service: event handlers and HTTP endpoints, a few lines each.
The rules live in domain.py and handlers.py."""

from __future__ import annotations

from nameko.web.handlers import http

from contacts import SERVICE_NAME, handlers, outbound_events, queries
from contacts.models import Contact, outbox, processed_events
from contacts.schemas import ContactCreateSchema
from mailroom_shared import config
from mailroom_shared.addresses import InvalidAddress, normalise_email
from mailroom_shared.auth import authenticated
from mailroom_shared.events.envelope import parse_envelope
from mailroom_shared.http import (
    Conflict,
    HttpError,
    NotFound,
    decode_cursor,
    health_response,
    json_endpoint,
    page_limit,
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

OUTBOX = Outbox(outbox)
PROCESSED = ProcessedEvents(processed_events)
OWN_ADDRESSES = handlers.OwnAddresses()


def _settings() -> handlers.Settings:
    return handlers.Settings(
        create_for_automated_senders=config.env_bool("CONTACTS_CREATE_FOR_AUTOMATED_SENDERS", False))


class ContactsService(outbound_events.OutboundEvents):  # issue #4: outbound_events.py
    name = SERVICE_NAME

    topology = TopologyProvider()
    db = DatabaseProvider(SERVICE_NAME)
    relay = OutboxRelayProvider(SERVICE_NAME, lambda: outbox)

    # --- events -------------------------------------------------------------------------

    @reliable_event_handler("ingest", "message_received")
    def handle_message_received(self, envelope):
        data = parse_envelope(envelope, "message_received")
        PROCESSED.run_once(self.db, envelope, "handle_message_received",
                           lambda session: handlers.record_inbound_message(session, OUTBOX, data, envelope["id"],
                                                                           _settings(), OWN_ADDRESSES))
        self.relay.wake()

    @reliable_event_handler("conversations", "message_added")
    def handle_message_added(self, envelope):
        data = parse_envelope(envelope, "message_added")
        PROCESSED.run_once(self.db, envelope, "handle_message_added", lambda session: handlers.link_conversation(
            session, data.get("intake_id"), data["conversation_id"]))

    @reliable_event_handler("conversations", "conversation_spam_marked")
    def handle_conversation_spam_marked(self, envelope):
        data = parse_envelope(envelope, "conversation_spam_marked")
        if data["spam"]:
            return  # marking spam later leaves the contact: it may have other, real mail
        PROCESSED.run_once(self.db, envelope, "handle_conversation_spam_marked", lambda session: handlers.release_held(
            session, OUTBOX, data["intake_ids"], data["contact_email"], data["contact_name"], envelope["id"]))
        self.relay.wake()

    @reliable_event_handler("conversations", "message_attribution_corrected")
    def handle_message_attribution_corrected(self, envelope):
        data = parse_envelope(envelope, "message_attribution_corrected")
        PROCESSED.run_once(self.db, envelope, "handle_message_attribution_corrected",
                           lambda session: handlers.move_attribution(session, OUTBOX, data, envelope["id"]))
        self.relay.wake()

    @reliable_event_handler("conversations", "inbox_updated")
    def handle_inbox_updated(self, envelope):
        data = parse_envelope(envelope, "inbox_updated")
        PROCESSED.run_once(self.db, envelope, "handle_inbox_updated",
                           lambda session: handlers.apply_inbox_update(session, data))
        OWN_ADDRESSES.forget()

    # --- HTTP ---------------------------------------------------------------------------

    @http("GET", "/health/contacts")
    def health(self, request):
        return health_response(self.db, SERVICE_NAME)


    @http("GET", "/api/contacts/<string:contact_id>")
    @json_endpoint
    @authenticated  # any signed-in user of the account (docs/access.md: contacts are account-wide)
    def get_contact(self, request, contact_id):
        with self.db.transaction() as session:
            contact = session.get(Contact, contact_id)
            if contact is None:
                raise NotFound(f"no contact {contact_id}")
            return queries.contact_view(contact)

    @http("GET", "/api/contacts")
    @json_endpoint
    @authenticated  # any signed-in user of the account (docs/access.md: contacts are account-wide)
    def find_contacts(self, request):
        """`?email=` exact (normalised) match, or `?q=` search by name or email."""
        email, query = request.args.get("email"), request.args.get("q")
        with self.db.transaction() as session:
            if email:
                try:
                    contact = handlers.find_contact_by_email(session, normalise_email(email))
                except InvalidAddress as exc:
                    raise HttpError(str(exc)) from exc
                return {"items": [queries.contact_view(contact)] if contact else [], "next_cursor": None}
            if query:
                return {"items": queries.search_contacts(session, query, page_limit(request, 20, 100)),
                        "next_cursor": None}
        raise HttpError("give ?email= or ?q=")

    @http("POST", "/api/contacts")
    @json_endpoint
    @authenticated  # any signed-in user of the account (docs/access.md: contacts are account-wide)
    def create_contact(self, request):
        body = ContactCreateSchema().load(read_json(request))
        try:
            emails = [normalise_email(e) for e in body["emails"]]
        except InvalidAddress as exc:
            raise HttpError(str(exc)) from exc
        with self.db.transaction() as session:
            for email in emails:
                if handlers.find_contact_by_email(session, email):
                    raise Conflict(f"{email} already belongs to a contact")
            contact, _ = handlers.resolve_or_create(session, OUTBOX, emails[0], body["name"], "api")
            for extra in emails[1:]:
                handlers.add_email(session, contact, extra)
            session.flush()
            view = queries.contact_view(contact)
        self.relay.wake()
        return 201, view

    @http("GET", "/api/contacts/<string:contact_id>/timeline")
    @json_endpoint
    @authenticated  # any signed-in user of the account (docs/access.md: contacts are account-wide)
    def get_timeline(self, request, contact_id):
        with self.db.transaction() as session:
            if session.get(Contact, contact_id) is None:
                raise NotFound(f"no contact {contact_id}")
            return queries.timeline_page(session, contact_id, decode_cursor(request.args.get("cursor")),
                                         page_limit(request), request.principal)
