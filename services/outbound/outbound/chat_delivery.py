"""The chat delivery worker: a nameko provider (a managed green thread) that claims a due reply to
a chat conversation (chat_replies.claim_next), POSTs it signed to the connector and records the
outcome. Woken after a reply is queued in this process, polling for due retries
(OUTBOUND_POLL_SECONDS). On SIGTERM the request in flight is finished and recorded."""

from __future__ import annotations

import logging

from mailroom_shared import observability
from mailroom_shared.db import Database
from mailroom_shared.kit import SettingsProvider
from mailroom_shared.messaging.nameko_adapters import ConcurrentWorker, OutboxRelayProvider, database_url_for
from outbound import SERVICE_NAME, chat_replies

log = logging.getLogger(__name__)


class ChatDeliveryWorker(ConcurrentWorker):
    identifier = "outbound.chat_delivery_worker"
    drain_seconds = 30.0  # the request in flight is finished and recorded on stop

    def setup(self):
        self.relay = next(d for d in self.container.dependencies if isinstance(d, OutboxRelayProvider))
        self.outbox = self.container.service_cls.outbox
        self.database = Database(database_url_for(self.container, SERVICE_NAME))

    def start(self):
        self.settings = SettingsProvider.of(self.container)
        self.poll_interval = self.settings.poll_seconds
        super().start()

    def work_once(self) -> bool:
        with self.database.transaction() as session:
            claimed = chat_replies.claim_next(session, self.outbox, self.settings)
        if claimed is None:
            return False
        if claimed.secret is not None:  # else: failed or put back, nothing to send
            with self.busy():
                with observability.DELIVERY_DURATION.labels("chat").time():
                    outcome = chat_replies.deliver(claimed, self.settings)
                log.info("chat reply %s attempt %d: %s %s", claimed.id, claimed.attempt, outcome.state,
                         outcome.status or outcome.reason)
                with self.database.transaction() as session:
                    state = chat_replies.record_outcome(session, self.outbox, claimed, outcome, self.settings).state
                observability.DELIVERIES.labels("chat", state).inc()
        self.relay.wake()
        return True
