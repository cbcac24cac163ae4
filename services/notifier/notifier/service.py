"""The notifier's nameko entrypoints: the webhook subscriptions and Slack connections APIs
(super admins), the public events it forwards to webhooks and posts to Slack, Slack's Events API
callbacks and the timer that acts on them, and its delivery and Slack post workers."""

from nameko.rpc import RpcProxy
from nameko.timer import timer
from werkzeug.wrappers import Response

from mailroom_shared import safe_http
from mailroom_shared.http import health_response, page_limit, read_json
from mailroom_shared.kit import after_commit, consumes, endpoint, service_base
from notifier import SERVICE_NAME, erasure, handlers, models, queries, settings, slack_handlers, slack_replies
from notifier.delivery_worker import DeliveryWorker
from notifier.slack_worker import SlackWorker

SLACK_EVENTS_TICK_SECONDS = 0.5

Base = service_base(SERVICE_NAME, models.outbox, models.processed_events, settings.load,
                    publishes={"webhook_disabled": 1, "contact_notifications_erased": 1})


class NotifierService(Base):
    name = SERVICE_NAME
    deliveries = DeliveryWorker()
    slack_posts = SlackWorker()
    conversations_rpc = RpcProxy("conversations")  # who a Slack user is, what they may do, comments
    outbound_rpc = RpcProxy("outbound")  # replies from Slack threads (chat conversations)

    @endpoint("GET", "/health/notifier", auth=False)
    def health(self, request):
        return health_response(self.db, SERVICE_NAME)

    # --- HTTP: webhook subscriptions (super admins only) -----------------------------------------

    def _check_target(self, url):
        safe_http.checked_target(url, allow_http=self.settings.allow_http,
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
        if erasure.is_late_copy(session, envelope, data):  # produced before its person was erased
            return
        if handlers.record_event(session, envelope, event_type, data):
            after_commit(session, self.deliveries)
        if slack_handlers.record_posts(session, envelope, event_type, data, self.settings):
            after_commit(session, self.slack_posts)

    # --- Slack: connections (super admins only), Events API callbacks ----------------------------

    @endpoint("POST", "/api/slack/connections")
    def create_slack_connection(self, request):
        """Connect an inbox to a Slack channel; the bot token and signing secret are never returned."""
        with self.db.transaction() as session:
            connection = slack_handlers.create_connection(session, request.principal, read_json(request),
                                                          self.settings)
            return 201, queries.slack_connection_view(session, connection)

    @endpoint("GET", "/api/slack/connections")
    def list_slack_connections(self, request):
        slack_handlers.require_super_admin(request.principal)
        with self.db.transaction() as session:
            return queries.list_slack_connections(session, request.args.get("inbox_id"))

    @endpoint("GET", "/api/slack/connections/<string:connection_id>")
    def get_slack_connection(self, request, connection_id):
        slack_handlers.require_super_admin(request.principal)
        with self.db.transaction() as session:
            return queries.get_slack_connection(session, connection_id)

    @endpoint("PATCH", "/api/slack/connections/<string:connection_id>")
    def update_slack_connection(self, request, connection_id):
        with self.db.transaction() as session:
            connection = slack_handlers.update_connection(session, request.principal, connection_id,
                                                          read_json(request), self.settings)
            return queries.slack_connection_view(session, connection)

    @endpoint("DELETE", "/api/slack/connections/<string:connection_id>")
    def delete_slack_connection(self, request, connection_id):
        with self.db.transaction() as session:
            slack_handlers.delete_connection(session, request.principal, connection_id)
        return Response(status=204)

    @endpoint("POST", "/slack/events", auth=False)
    def slack_events(self, request):
        """Slack's Events API request URL: verified with a connection's signing secret (v0, 5
        minutes), url_verification answered, each event stored once (retries de-duplicated)."""
        raw = request.stream.read(slack_handlers.MAX_EVENT_BYTES + 1)
        if len(raw) > slack_handlers.MAX_EVENT_BYTES:
            return 413, {"error": {"code": "too_large", "message": "the body is larger than 1 MiB"}}
        with self.db.transaction() as session:
            return slack_handlers.receive_event(session, raw, request.headers, self.settings)

    @timer(interval=SLACK_EVENTS_TICK_SECONDS)
    def act_on_slack_events(self):
        """Replies and notes from Slack threads, as their mailroom users (slack_replies)."""
        while self.settings.secret_key:
            with self.db.transaction() as session:
                claimed = slack_handlers.claim_event(session, self.settings)
            if claimed is None:
                return
            try:
                outcome, retry = slack_replies.handle(claimed, self.settings.slack_api_url,
                                                      self.conversations_rpc, self.outbound_rpc), False
            except slack_replies.TryAgain as exc:
                outcome, retry = f"trying again: {exc}", True
            with self.db.transaction() as session:
                slack_handlers.finish_event(session, claimed, outcome, retry)

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

    # GDPR art. 17 (issue #17, erasure.py): the person's deliveries and posts redacted or dropped
    @consumes("contacts", "contact_erased")
    def handle_contact_erased(self, session, data, envelope):
        erasure.erase_contact(session, self.outbox, data, envelope.get("time"))

    @consumes("outbound", "email_sent")
    def handle_email_sent(self, session, data, envelope):
        self._record(session, envelope, "email_sent", data)

    @consumes("outbound", "email_failed")
    def handle_email_failed(self, session, data, envelope):
        self._record(session, envelope, "email_failed", data)

    @consumes("outbound", "email_bounced")
    def handle_email_bounced(self, session, data, envelope):
        self._record(session, envelope, "email_bounced", data)
