"""The notifier's nameko entrypoints: the webhook subscriptions API (super admins), the public
events it forwards to webhooks, and its delivery worker."""

from werkzeug.wrappers import Response

from mailroom_shared.http import health_response, page_limit, read_json
from mailroom_shared.kit import after_commit, consumes, endpoint, service_base
from notifier import SERVICE_NAME, handlers, models, queries, settings, webhook_client
from notifier.delivery_worker import DeliveryWorker

Base = service_base(SERVICE_NAME, models.outbox, models.processed_events, settings.load,
                    publishes={"webhook_disabled": 1})


class NotifierService(Base):
    name = SERVICE_NAME
    deliveries = DeliveryWorker()

    @endpoint("GET", "/health/notifier", auth=False)
    def health(self, request):
        return health_response(self.db, SERVICE_NAME)

    # --- HTTP: webhook subscriptions (super admins only) -----------------------------------------

    def _check_target(self, url):
        webhook_client.checked_target(url, allow_http=self.settings.allow_http,
                                      allow_private=self.settings.allow_private_targets)

    @endpoint("POST", "/api/webhooks")
    def create_webhook(self, request):
        """A new subscription; its signing secret (whsec_…) is in this answer only."""
        with self.db.transaction() as session:
            subscription, secret = handlers.create_subscription(session, request.principal, read_json(request),
                                                                self.settings, self._check_target)
            return 201, queries.subscription_view(subscription, secret)

    @endpoint("GET", "/api/webhooks")
    def list_webhooks(self, request):
        handlers.require_super_admin(request.principal)
        with self.db.transaction() as session:
            return queries.list_subscriptions(session)

    @endpoint("GET", "/api/webhooks/<string:webhook_id>")
    def get_webhook(self, request, webhook_id):
        handlers.require_super_admin(request.principal)
        with self.db.transaction() as session:
            return queries.get_subscription(session, webhook_id)

    @endpoint("PATCH", "/api/webhooks/<string:webhook_id>")
    def update_webhook(self, request, webhook_id):
        """A partial update: only the fields given change (`enabled: true` re-enables a
        subscription disabled after its retries ran out; its waiting deliveries then go out)."""
        with self.db.transaction() as session:
            subscription = handlers.update_subscription(session, request.principal, webhook_id, read_json(request),
                                                        self.settings, self._check_target)
            return queries.subscription_view(subscription)

    @endpoint("DELETE", "/api/webhooks/<string:webhook_id>")
    def delete_webhook(self, request, webhook_id):
        with self.db.transaction() as session:
            handlers.delete_subscription(session, request.principal, webhook_id)
        return Response(status=204)

    @endpoint("POST", "/api/webhooks/<string:webhook_id>/rotate-secret")
    def rotate_webhook_secret(self, request, webhook_id):
        """A new signing secret, in this answer only; the old one also signs for 24 hours."""
        with self.db.transaction() as session:
            subscription, secret = handlers.rotate_secret(session, request.principal, webhook_id, self.settings)
            return queries.subscription_view(subscription, secret)

    @endpoint("GET", "/api/webhooks/<string:webhook_id>/deliveries")
    def list_webhook_deliveries(self, request, webhook_id):
        handlers.require_super_admin(request.principal)
        with self.db.transaction() as session:
            return queries.list_deliveries(session, webhook_id, page_limit(request), request.args.get("cursor"),
                                           request.args.get("state"))

    @endpoint("POST", "/api/webhooks/<string:webhook_id>/deliveries/<string:delivery_id>/redeliver")
    def redeliver_webhook(self, request, webhook_id, delivery_id):
        with self.db.transaction() as session:
            handlers.redeliver(session, request.principal, webhook_id, delivery_id)
            after_commit(session, self.deliveries)
        with self.db.transaction() as session:
            return 202, queries.delivery(session, webhook_id, delivery_id)

    # --- events forwarded to webhooks (domain.subscriptions.FORWARDED) ---------------------------

    def _record(self, session, envelope, event_type, data):
        if handlers.record_event(session, envelope, event_type, data):
            after_commit(session, self.deliveries)

    @consumes("conversations", "conversation_created")
    def handle_conversation_created(self, session, data, envelope):
        self._record(session, envelope, "conversation_created", data)

    @consumes("conversations", "message_added")
    def handle_message_added(self, session, data, envelope):
        self._record(session, envelope, "message_added", data)

    @consumes("conversations", "conversation_assigned")
    def handle_conversation_assigned(self, session, data, envelope):
        self._record(session, envelope, "conversation_assigned", data)

    @consumes("conversations", "conversation_closed")
    def handle_conversation_closed(self, session, data, envelope):
        self._record(session, envelope, "conversation_closed", data)

    @consumes("conversations", "conversation_reopened")
    def handle_conversation_reopened(self, session, data, envelope):
        self._record(session, envelope, "conversation_reopened", data)

    @consumes("conversations", "comment_added")
    def handle_comment_added(self, session, data, envelope):
        self._record(session, envelope, "comment_added", data)

    @consumes("conversations", "conversation_moved")
    def handle_conversation_moved(self, session, data, envelope):
        self._record(session, envelope, "conversation_moved", data)

    @consumes("contacts", "contact_created")
    def handle_contact_created(self, session, data, envelope):
        self._record(session, envelope, "contact_created", data)

    @consumes("outbound", "email_sent")
    def handle_email_sent(self, session, data, envelope):
        self._record(session, envelope, "email_sent", data)

    @consumes("outbound", "email_failed")
    def handle_email_failed(self, session, data, envelope):
        self._record(session, envelope, "email_failed", data)

    @consumes("outbound", "email_bounced")
    def handle_email_bounced(self, session, data, envelope):
        self._record(session, envelope, "email_bounced", data)
