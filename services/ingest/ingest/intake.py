"""The ingest service's nameko extensions around the intake: the blob store it serves from and
the intake processor, a background worker that turns stored intake rows into events
(handlers.process_batch). It is woken after an HTTP/IMAP accept, by PostgreSQL NOTIFY when the
SMTP listener process stores mail, and polls as the fallback."""

from __future__ import annotations

import contextlib
import logging

import eventlet
from eventlet import tpool
from eventlet.hubs import trampoline
from nameko.extensions import DependencyProvider

from ingest import SERVICE_NAME, handlers
from ingest.analyser import ParserPool
from ingest.blobstore import BlobStore, open_blob_store
from ingest.settings import Settings
from mailroom_shared.db import Database, is_postgres
from mailroom_shared.kit import SettingsProvider
from mailroom_shared.messaging.nameko_adapters import BackgroundWorker, OutboxRelayProvider, database_url_for

log = logging.getLogger(__name__)


def loaded_settings(container) -> Settings:
    """The settings the container's SettingsProvider loaded (during setup: read them in start)."""
    return SettingsProvider.of(container)


class BlobStoreProvider(DependencyProvider):
    """The blob store (raw messages and attachments): INGEST_BLOB_DIR, or the bucket of
    INGEST_BLOB_STORE=s3."""

    store: BlobStore | None = None

    def start(self):
        # the settings are loaded once every extension is set up. Opened in an OS thread: an S3
        # client loads boto3 and its service model (a second of CPU), which must not stall the loop
        self.store = tpool.execute(open_blob_store, loaded_settings(self.container).blob_location)

    def get_dependency(self, worker_ctx):
        return self.store


class _NoNotification(Exception):
    """No NOTIFY within the listener's wait: look at `_stopping` and wait again."""


class IntakeProcessor(BackgroundWorker):
    """Processes stored intake rows in batches of up to INGEST_INTAKE_BATCH, one at a time after
    a failed batch (so a row whose commit fails holds back the others for one pass at most)."""

    identifier = "ingest.intake_processor"

    def setup(self):
        # the container's own (bound) relay, to publish as soon as a message is processed
        self.relay = next(d for d in self.container.dependencies if isinstance(d, OutboxRelayProvider))
        self.outbox = self.container.service_cls.outbox
        self.database = Database(database_url_for(self.container, SERVICE_NAME))
        self.directory = handlers.InboxDirectory()

    def start(self):
        self.settings = loaded_settings(self.container)
        # the analysis runs in parser processes with a hard deadline, never on this event loop
        self.analyser = ParserPool(self.settings.parse_workers, self.settings.limits.max_seconds,
                                   self.settings.parse_memory_mb or None)
        self.analyser.start()
        # on PostgreSQL the SMTP listener's NOTIFY wakes us; the poll is only the fallback there
        postgres = is_postgres(self.database.engine)
        configured = self.settings.intake_poll_seconds
        self.poll_interval = configured if configured is not None else (1.0 if postgres else 0.1)
        self.batch_size = self._limit = self.settings.intake_batch
        super().start()
        if postgres:
            self.container.spawn_managed_thread(self._listen, identifier="ingest.intake_listener")

    def work_once(self) -> bool:
        limit = self._limit
        try:
            done = handlers.process_batch(self.database, self.outbox, self.settings, self.analyser, self.directory,
                                          limit=limit)
        except Exception:
            self._limit = 1
            raise
        self._limit = self.batch_size
        if done:
            self.relay.wake()  # publish this batch while the next one is parsed
        # a full batch: more may be waiting. Fewer: none was left when it claimed, and mail stored
        # since has woken the processor again (NOTIFY, or the accept in this process), so no
        # empty claim transaction after every batch
        return done >= limit

    def get_dependency(self, worker_ctx):
        """Call it to have the processor run now; `.analyser` is its parser pool."""
        handle = super().get_dependency(worker_ctx)
        handle.analyser = self.analyser
        return handle

    def after_work(self, done: int) -> None:
        self.relay.wake()

    def stop(self):
        self._stopping = True
        self.analyser.close()
        self.database.dispose()

    def _listen(self):
        """LISTEN for the SMTP listener's NOTIFY and wake the processor: mail is picked up at once
        instead of at the next poll. Any trouble: reconnect after a pause (the poll still runs)."""
        while not self._stopping:
            connection = None
            try:
                fairy = self.database.engine.raw_connection()
                fairy.detach()  # a long-lived connection of its own, not the pool's
                connection = fairy.dbapi_connection
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute(f"LISTEN {handlers.INTAKE_NOTIFY_CHANNEL}")
                while not self._stopping:
                    try:
                        trampoline(connection.fileno(), read=True, timeout=5.0, timeout_exc=_NoNotification)
                    except _NoNotification:
                        continue
                    connection.poll()
                    if connection.notifies:
                        connection.notifies.clear()
                        self.wake()
            except Exception:
                log.warning("intake notifications unavailable; polling every %.1f s meanwhile", self.poll_interval,
                            exc_info=True)
                eventlet.sleep(5.0)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):  # already broken
                        connection.close()
