"""The Slack post worker: a nameko provider running NOTIFIER_SLACK_CONCURRENCY managed green
threads that each claim a due post (slack_handlers.claim_post), post it to the connection's
channel (in the conversation's thread once it has one) and record the outcome. A post whose
previous attempt died mid-request is first looked for in the channel (by the post key in its
metadata) and only posted when it is not there. Woken after an event recorded posts in this
process, and polling for due retries (NOTIFIER_POLL_SECONDS)."""

from __future__ import annotations

import logging

from mailroom_shared import observability
from mailroom_shared.db import Database
from mailroom_shared.kit import SettingsProvider
from mailroom_shared.messaging.nameko_adapters import ConcurrentWorker, database_url_for
from notifier import SERVICE_NAME, slack_client, slack_handlers

log = logging.getLogger(__name__)
LOOK_BACK_SECONDS = 60  # a root post interrupted by a crash is looked for from its creation, less this
STATE_METRIC = {"posted": "sent", "retry": "deferred", "rate_limited": "deferred", "stale": "sent"}


class SlackWorker(ConcurrentWorker):
    identifier = "notifier.slack_post_worker"
    drain_seconds = 20.0  # posts in flight are finished and recorded on stop

    def setup(self):
        self.database = Database(database_url_for(self.container, SERVICE_NAME))

    def start(self):
        self.settings = SettingsProvider.of(self.container)
        self.poll_interval = self.settings.poll_seconds
        super().start()

    def threads(self) -> int:
        return self.settings.slack_concurrency

    def work_once(self) -> bool:
        if not self.settings.secret_key:
            return False
        with self.database.transaction() as session:
            claimed = slack_handlers.claim_post(session, self.settings)
        if claimed is None:
            return False
        with self.busy():
            ts, failure = self._post(claimed)
            with self.database.transaction() as session:
                outcome = slack_handlers.record_post_outcome(
                    session, claimed, ts, failure and str(failure), failure and failure.retry_after,
                    in_doubt=bool(failure and not failure.answered))
            error = failure and str(failure)
            observability.DELIVERIES.labels("slack", STATE_METRIC[outcome]).inc()
            log.info("slack post %s attempt %d: %s%s", claimed.post_id, claimed.attempt, outcome,
                     f" ({error})" if error else "")
        return True

    def _post(self, claimed) -> tuple[str | None, slack_client.SlackFailed | None]:
        api = self.settings.slack_api_url
        try:
            if claimed.in_doubt:
                found = slack_client.find_post(api, claimed.token, claimed.channel_id, claimed.thread_ts,
                                               claimed.post_key, claimed.created_at - LOOK_BACK_SECONDS)
                if found is not None:
                    return found.ts, None
            posted = slack_client.post_message(api, claimed.token, claimed.channel_id, claimed.text,
                                               claimed.thread_ts, claimed.post_key)
            return posted.ts, None
        except slack_client.SlackFailed as exc:
            return None, exc
