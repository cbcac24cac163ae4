"""The webhook delivery worker: a nameko provider running NOTIFIER_DELIVERY_CONCURRENCY managed green
threads that each claim a due delivery (handlers.claim_next), sign it (Standard Webhooks, a fresh
webhook-timestamp per attempt, the same webhook-id), POST it (mailroom_shared.safe_http: checked
against SSRF, pinned to the checked address) and record the outcome (handlers.record_outcome). Woken
after an event recorded deliveries in this process, and polling for due retries
(NOTIFIER_POLL_SECONDS). On stop the requests in flight are finished and recorded first."""

from __future__ import annotations

import logging
import time

from mailroom_shared import observability, safe_http
from mailroom_shared.db import Database, utcnow
from mailroom_shared.kit import SettingsProvider
from mailroom_shared.messaging.nameko_adapters import ConcurrentWorker, database_url_for
from notifier import SERVICE_NAME, handlers
from notifier.domain import signing

log = logging.getLogger(__name__)
WEBHOOK_USER_AGENT = "mailroom-webhooks/1"
STATE_METRIC = {"delivered": "sent", "retry": "deferred", "failed": "failed"}


class DeliveryWorker(ConcurrentWorker):
    identifier = "notifier.webhook_delivery_worker"
    drain_seconds = 20.0  # requests in flight are finished and recorded on stop

    def setup(self):
        self.database = Database(database_url_for(self.container, SERVICE_NAME))

    def start(self):
        self.settings = SettingsProvider.of(self.container)
        self.poll_interval = self.settings.poll_seconds
        super().start()

    def threads(self) -> int:
        return self.settings.delivery_concurrency

    def work_once(self) -> bool:
        with self.database.transaction() as session:
            claimed = handlers.claim_next(session, self.settings)
        if claimed is None:
            return False
        if not claimed.attempt:  # failed (attempts used up) instead of claimed
            observability.DELIVERIES.labels("webhook", "failed").inc()
            return True
        with self.busy():
            started_at = utcnow()
            headers = signing.headers(claimed.secrets, claimed.event_id, int(time.time()), claimed.body)
            answer = safe_http.post(
                claimed.url, claimed.body, headers, allow_http=self.settings.allow_http,
                allow_private=self.settings.allow_private_targets,
                connect_timeout=self.settings.connect_timeout, total_timeout=self.settings.total_timeout,
                user_agent=WEBHOOK_USER_AGENT)
            observability.DELIVERY_DURATION.labels("webhook").observe(answer.duration)
            with self.database.transaction() as session:
                outcome = handlers.record_outcome(session, claimed, answer.status, answer.error, answer.duration,
                                                  self.settings, started_at, self.container.service_cls.outbox)
            observability.DELIVERIES.labels("webhook", STATE_METRIC[outcome]).inc()
            log.info("webhook delivery %s (event %s) attempt %d: %s %s", claimed.delivery_id, claimed.event_id,
                     claimed.attempt, outcome, answer.status if answer.status is not None else answer.error)
        return True
