"""The delivery worker: a nameko provider running OUTBOUND_DELIVERY_CONCURRENCY managed green
threads that each claim a due email (handlers.claim_next), send it through its relay
(smtp_client) and record the outcome (handlers.record_outcome). Woken after an email is queued
in this process, and polling for due retries (OUTBOUND_POLL_SECONDS). On SIGTERM the email being
sent is finished and recorded before the process exits."""

from __future__ import annotations

import logging

from mailroom_shared import observability
from mailroom_shared.db import Database
from mailroom_shared.kit import SettingsProvider
from mailroom_shared.messaging.nameko_adapters import ConcurrentWorker, OutboxRelayProvider, database_url_for
from outbound import SERVICE_NAME, handlers, smtp_client

log = logging.getLogger(__name__)


class DeliveryWorker(ConcurrentWorker):
    identifier = "outbound.delivery_worker"
    drain_seconds = 30.0  # an in-flight send is finished and recorded on stop

    def setup(self):
        self.relay = self._dependency(OutboxRelayProvider)
        self.outbox = self.container.service_cls.outbox
        self.database = Database(database_url_for(self.container, SERVICE_NAME))

    def start(self):
        # the settings are loaded in SettingsProvider.setup, which has run for every provider by now
        self.settings = SettingsProvider.of(self.container)
        self.poll_interval = self.settings.poll_seconds
        # SMTP sessions kept per relay and reused by the next email (smtp_client.ConnectionPool)
        self.smtp_pool = smtp_client.ConnectionPool(max_idle_per_relay=self.settings.delivery_concurrency)
        super().start()

    def threads(self) -> int:
        # several sends at once (each claims its own email under FOR UPDATE SKIP LOCKED and a
        # lease): one slow relay answer no longer holds back every other email
        return self.settings.delivery_concurrency

    def _dependency(self, kind):
        return next(d for d in self.container.dependencies if isinstance(d, kind))

    def work_once(self) -> bool:
        with self.database.transaction() as session:
            claimed = handlers.claim_next(session, self.outbox, self.settings)
        if claimed is None:
            return False
        if claimed.raw:  # else: failed (attempts used up) instead of claimed
            with self.busy():
                with observability.DELIVERY_DURATION.labels("email").time():
                    outcome = smtp_client.deliver(self.settings.relay_for(claimed.mail_from), claimed.mail_from,
                                                  claimed.recipients, claimed.raw,
                                                  local_hostname=self.settings.message_id_domain,
                                                  pool=self.smtp_pool)
                log.info("email %s attempt %d: %s %s", claimed.email_id, claimed.attempt, outcome.status,
                         outcome.code or "")
                with self.database.transaction() as session:
                    email = handlers.record_outcome(session, self.outbox, claimed, outcome, self.settings)
                    state = email.state
                observability.DELIVERIES.labels("email", state).inc()
        self.relay.wake()
        return True

    def close(self):
        self.smtp_pool.close()
        self.database.dispose()
