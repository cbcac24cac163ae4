"""The notifier's nameko entrypoints. A skeleton: it runs, migrates, declares the topology and
answers its health check, so deployments are complete; Slack and webhooks are not built yet."""

from mailroom_shared.http import health_response
from mailroom_shared.kit import endpoint, service_base
from notifier import SERVICE_NAME, models, settings

Base = service_base(SERVICE_NAME, models.outbox, models.processed_events, settings.load)


class NotifierService(Base):
    name = SERVICE_NAME

    @endpoint("GET", "/health/notifier", auth=False)
    def health(self, request):
        return health_response(self.db, SERVICE_NAME)
