"""The Slack post worker: a nameko provider running NOTIFIER_SLACK_CONCURRENCY managed green
threads that each claim a due post (slack_handlers.claim_post), post it to the connection's
channel (in the conversation's thread once it has one) and record the outcome. A post whose
previous attempt died mid-request is first looked for in the channel (by the post key in its
metadata) and only posted when it is not there. Woken after an event recorded posts in this
process, and polling for due retries (NOTIFIER_POLL_SECONDS)."""

from __future__ import annotations

import logging

import eventlet

from mailroom_shared import observability
from mailroom_shared.db import Database
from mailroom_shared.kit import SettingsProvider
from mailroom_shared.messaging.nameko_adapters import BackgroundWorker, database_url_for
from notifier import SERVICE_NAME, slack_client, slack_handlers

log = logging.getLogger(__name__)
LOOK_BACK_SECONDS = 60  # a root post interrupted by a crash is looked for from its creation, less this
STATE_METRIC = {"posted": "sent", "retry": "deferred", "rate_limited": "deferred", "stale": "sent"}


class SlackWorker(BackgroundWorker):
    identifier = "notifier.slack_post_worker"

    def __init__(self):
        super().__init__()
        self._busy = 0

    def setup(self):
        self.database = Database(database_url_for(self.container, SERVICE_NAME))

    def start(self):
        self.settings = SettingsProvider.of(self.container)
        self.poll_interval = self.settings.poll_seconds
        for n in range(self.settings.slack_concurrency):
            self.container.spawn_managed_thread(self._run, identifier=f"{self.identifier}.{n}")

    def work_once(self) -> bool:
        if not self.settings.secret_key:
            return False
        with self.database.transaction() as session:
            claimed = slack_handlers.claim_post(session, self.settings)
        if claimed is None:
            return False
        self._busy += 1
        try:
            ts, failure = self._post(claimed)
            with self.database.transaction() as session:
                outcome = slack_handlers.record_post_outcome(
                    session, claimed, ts, failure and str(failure), failure and failure.retry_after,
                    in_doubt=bool(failure and not failure.answered))
            error = failure and str(failure)
            observability.DELIVERIES.labels("slack", STATE_METRIC[outcome]).inc()
            log.info("slack post %s attempt %d: %s%s", claimed.post_id, claimed.attempt, outcome,
                     f" ({error})" if error else "")
        finally:
            self._busy -= 1
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

    def stop(self):
        self._stopping = True
        for _ in range(200):  # let posts in flight finish and be recorded (up to 20 s)
            if not self._busy:
                break
            eventlet.sleep(0.1)
        self.database.dispose()
