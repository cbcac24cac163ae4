"""The chat delivery worker: a nameko provider (a managed green thread) that claims a due reply to
a chat conversation (chat_replies.claim_next), POSTs it signed to the connector and records the
outcome. Woken after a reply is queued in this process, polling for due retries
(OUTBOUND_POLL_SECONDS). On SIGTERM the request in flight is finished and recorded."""

from __future__ import annotations

import logging

import eventlet

from mailroom_shared import observability
from mailroom_shared.db import Database
from mailroom_shared.kit import SettingsProvider
from mailroom_shared.messaging.nameko_adapters import BackgroundWorker, OutboxRelayProvider, database_url_for
from outbound import SERVICE_NAME, chat_replies

log = logging.getLogger(__name__)


class ChatDeliveryWorker(BackgroundWorker):
    identifier = "outbound.chat_delivery_worker"

    def __init__(self):
        super().__init__()
        self._busy = 0

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
            self._busy += 1
            try:
                with observability.DELIVERY_DURATION.labels("chat").time():
                    outcome = chat_replies.deliver(claimed, self.settings)
                log.info("chat reply %s attempt %d: %s %s", claimed.id, claimed.attempt, outcome.state,
                         outcome.status or outcome.reason)
                with self.database.transaction() as session:
                    state = chat_replies.record_outcome(session, self.outbox, claimed, outcome, self.settings).state
                observability.DELIVERIES.labels("chat", state).inc()
            finally:
                self._busy -= 1
        self.relay.wake()
        return True

    def stop(self):
        self._stopping = True
        self.wake()
        for _ in range(300):  # let an in-flight request finish and be recorded (up to 30 s)
            if not self._busy:
                break
            eventlet.sleep(0.1)
        self.database.dispose()
