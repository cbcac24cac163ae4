"""nameko adapter of the notifier service. A skeleton: it runs, migrates, declares the topology
and answers its health check, so deployments are complete; Slack and webhooks are not built yet."""

from nameko.web.handlers import http

from mailroom_shared.http import health_response
from mailroom_shared.messaging.nameko_adapters import DatabaseProvider, OutboxRelayProvider, TopologyProvider
from notifier import SERVICE_NAME
from notifier.models import outbox


class NotifierService:
    name = SERVICE_NAME

    topology = TopologyProvider()
    db = DatabaseProvider(SERVICE_NAME)
    relay = OutboxRelayProvider(SERVICE_NAME, lambda: outbox)

    @http("GET", "/health/notifier")
    def health(self, request):
        return health_response(self.db, SERVICE_NAME)
