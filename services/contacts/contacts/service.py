"""nameko entrypoints of the contacts service, a few lines each: the events it consumes and its
HTTP API. The rules are in domain/, the use cases in handlers.py, the read models in queries.py."""

from __future__ import annotations

from contacts import SERVICE_NAME, calls, channel_contacts, corrections, handlers, queries, settings
from contacts.models import Contact, ContactErasure, outbox, processed_events
from contacts.schemas import ContactCreateSchema, ContactEmailSchema, ContactMergeSchema, ContactUpdateSchema
from mailroom_shared.http import (
    Forbidden,
    HttpError,
    decode_cursor,
    get_or_404,
    health_response,
    page_limit,
    read_json,
    schema_instance,
)
from mailroom_shared.kit import after_commit, consumes, endpoint, service_base

Base = service_base(SERVICE_NAME, outbox, processed_events, settings.load,
                    publishes={"contact_created": 1, "contact_updated": 1, "timeline_entry_added": 1,
                               "contacts_merged": 1, "contact_erased": 1})


class ContactsService(Base):
    name = SERVICE_NAME
    own_addresses = handlers.OwnAddresses()  # our inboxes' addresses, cached in this process

    # --- events -------------------------------------------------------------------------

    @consumes("ingest", "message_received")
    def handle_message_received(self, session, data, envelope):
        handlers.record_inbound_message(session, self.outbox, data, envelope["id"], self.settings,
                                        self.own_addresses)

    @consumes("conversations", "message_added")
    def handle_message_added(self, session, data, envelope):
        handlers.link_conversation(session, data.get("intake_id"), data["conversation_id"])

    # marking spam later leaves the contact alone: it may have other, real mail
    # one email to several of our inboxes: the copy's intake id leads to the one conversation too
    @consumes("conversations", "conversation_shared")
    def handle_conversation_shared(self, session, data, envelope):
        handlers.link_conversation(session, data.get("intake_id"), data["conversation_id"])

    @consumes("conversations", "conversation_spam_marked", when=lambda data: not data["spam"])
    def handle_conversation_spam_marked(self, session, data, envelope):
        handlers.release_held(session, self.outbox, data["intake_ids"], data["contact_email"],
                              data["contact_name"], envelope["id"])

    @consumes("conversations", "message_attribution_corrected")
    def handle_message_attribution_corrected(self, session, data, envelope):
        handlers.move_attribution(session, self.outbox, data, envelope["id"])

    @consumes("conversations", "inbox_updated")
    def handle_inbox_updated(self, session, data, envelope):
        handlers.apply_inbox_update(session, data)
        after_commit(session, self.own_addresses.forget)

    @consumes("outbound", "email_sent")
    def handle_email_sent(self, session, data, envelope):
        handlers.record_outbound_email(session, self.outbox, data, envelope["id"], self.own_addresses)

    # chat and form channels (docs/channels.md): senders by chat identity or email, both ways logged
    @consumes("conversations", "channel_message_received")
    def handle_channel_message_received(self, session, data, envelope):
        channel_contacts.record_channel_message(session, self.outbox, data, envelope["id"], self.own_addresses)

    @consumes("outbound", "chat_message_sent")
    def handle_chat_message_sent(self, session, data, envelope):
        channel_contacts.record_chat_sent(session, self.outbox, data, envelope["id"])

    # calls logged in conversations (docs/calls.md): on the contact's timeline, the number learnt
    @consumes("conversations", "call_logged")
    def handle_call_logged(self, session, data, envelope):
        calls.record_call(session, self.outbox, data, envelope["id"])

    # erasure confirmations (corrections.py): each service's counts go into the erasure report
    @consumes("conversations", "contact_messages_erased")
    def handle_contact_messages_erased(self, session, data, envelope):
        corrections.confirm_erasure(session, "conversations", data)

    @consumes("ingest", "contact_mail_erased")
    def handle_contact_mail_erased(self, session, data, envelope):
        corrections.confirm_erasure(session, "ingest", data)

    @consumes("outbound", "contact_sent_mail_erased")
    def handle_contact_sent_mail_erased(self, session, data, envelope):
        corrections.confirm_erasure(session, "outbound", data)

    @consumes("notifier", "contact_notifications_erased")
    def handle_contact_notifications_erased(self, session, data, envelope):
        corrections.confirm_erasure(session, "notifier", data)

    # --- HTTP: any signed-in user of the account (docs/access.md: contacts are account-wide) ---

    @endpoint("GET", "/health/contacts", auth=False)
    def health(self, request):
        return health_response(self.db, SERVICE_NAME)

    @endpoint("GET", "/api/contacts/<string:contact_id>")
    def get_contact(self, request, contact_id):
        with self.db.transaction() as session:
            return queries.contact_view(get_or_404(session, Contact, contact_id, "contact"))

    @endpoint("GET", "/api/contacts")
    def find_contacts(self, request):
        """`?email=` exact (normalised) match, or `?q=` search by name or email."""
        email, query = request.args.get("email"), request.args.get("q")
        with self.db.transaction() as session:
            if email:
                return queries.contacts_with_email(session, email)
            if query:
                return queries.search_page(session, query, page_limit(request, 20, 100))
        raise HttpError("give ?email= or ?q=")

    @endpoint("POST", "/api/contacts")
    def create_contact(self, request):
        body = schema_instance(ContactCreateSchema).load(read_json(request))
        view = handlers.in_transaction(self.db, lambda session: queries.contact_view(
            handlers.create_contact(session, self.outbox, body["name"], body["emails"])))
        self.relay.wake()
        return 201, view

    @endpoint("PATCH", "/api/contacts/<string:contact_id>")
    def update_contact(self, request, contact_id):
        body = schema_instance(ContactUpdateSchema).load(read_json(request))
        view = handlers.in_transaction(self.db, lambda session: queries.contact_view(
            handlers.rename(session, self.outbox, contact_id, body["name"], request.principal.user_id)))
        self.relay.wake()
        return view

    @endpoint("POST", "/api/contacts/<string:contact_id>/emails")
    def add_contact_email(self, request, contact_id):
        body = schema_instance(ContactEmailSchema).load(read_json(request))

        def add(session):
            contact, added = handlers.add_email(session, self.outbox, contact_id, body["email"],
                                                request.principal.user_id)
            return added, queries.contact_view(contact)

        added, view = handlers.in_transaction(self.db, add)
        self.relay.wake()
        return (201 if added else 200), view

    @endpoint("DELETE", "/api/contacts/<string:contact_id>/emails/<string:email>")
    def remove_contact_email(self, request, contact_id, email):
        view = handlers.in_transaction(self.db, lambda session: queries.contact_view(
            handlers.remove_email(session, self.outbox, contact_id, email, request.principal.user_id)))
        self.relay.wake()
        return view

    @endpoint("GET", "/api/contacts/<string:contact_id>/timeline")
    def get_timeline(self, request, contact_id):
        with self.db.transaction() as session:
            get_or_404(session, Contact, contact_id, "contact")
            return queries.timeline_page(session, contact_id, decode_cursor(request.args.get("cursor")),
                                         page_limit(request), request.principal)

    # --- merging and erasing (issue #17, corrections.py) ------------------------------------

    @endpoint("POST", "/api/contacts/<string:contact_id>/merge")
    def merge_contacts(self, request, contact_id):
        """`{contact_id}` is merged into this contact (any signed-in user, as every change)."""
        body = schema_instance(ContactMergeSchema).load(read_json(request))
        view = handlers.in_transaction(self.db, lambda session: queries.contact_view(corrections.merge(
            session, self.outbox, contact_id, body["contact_id"], request.principal.user_id)))
        self.relay.wake()
        return view

    @endpoint("POST", "/api/contacts/<string:contact_id>/erase")
    def erase_contact(self, request, contact_id):
        """GDPR art. 17 (super admins only): 202 with the erasure report, complete once every
        service has confirmed (`GET /api/contacts/erasures/{id}`)."""
        view = handlers.in_transaction(self.db, lambda session: corrections.erasure_view(corrections.erase(
            session, self.outbox, contact_id, request.principal)))
        self.relay.wake()
        return 202, view

    @endpoint("GET", "/api/contacts/erasures/<string:erasure_id>")
    def get_erasure(self, request, erasure_id):
        if not corrections.may_erase(request.principal):
            raise Forbidden("only super admins may read erasure reports")
        with self.db.transaction() as session:
            return corrections.erasure_view(get_or_404(session, ContactErasure, erasure_id, "erasure"))
