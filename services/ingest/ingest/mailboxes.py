"""Connected IMAP mailboxes, polled by the ingest service: the timer that runs every
INGEST_IMAP_POLL_SECONDS, and the glue between the IMAP poller (imap_poller.py) and ingest —
cursors in ingest's database, fetched mail into the intake, failures recorded and announced."""

from __future__ import annotations

import logging
from collections.abc import Callable

from nameko.timer import Timer

from ingest import handlers, queries
from ingest.blobstore import DirectoryBlobStore
from ingest.imap_poller import MailboxConfig, MailboxCursor, PollResult, drain_mailboxes, poll_mailbox
from ingest.intake import loaded_settings
from ingest.models import MailboxCursor as CursorRow
from ingest.settings import Settings
from mailroom_shared import observability
from mailroom_shared.db import Database
from mailroom_shared.messaging.outbox import Outbox

log = logging.getLogger(__name__)


class MailboxPollTimer(Timer):
    """nameko's timer, firing every `Settings.imap_poll_seconds` (known once the settings are loaded)."""

    def __init__(self, **kwargs):
        super().__init__(interval=None, **kwargs)

    def start(self):
        self.interval = loaded_settings(self.container).imap_poll_seconds
        super().start()


every_mailbox_poll = MailboxPollTimer.decorator


class DatabaseCursorStore:
    """The poller's cursors (UIDVALIDITY, last UID) in ingest's database."""

    def __init__(self, database: Database):
        self.database = database

    def load(self, mailbox_id: str) -> MailboxCursor:
        with self.database.transaction() as session:
            row = session.get(CursorRow, mailbox_id)
            return MailboxCursor(uidvalidity=row.uidvalidity, last_uid=row.last_uid) if row else MailboxCursor(None)

    def save(self, mailbox_id: str, cursor: MailboxCursor) -> None:
        with self.database.transaction() as session:
            row = session.get(CursorRow, mailbox_id) or CursorRow(mailbox_id=mailbox_id, consecutive_failures=0)
            row.uidvalidity, row.last_uid = cursor.uidvalidity, cursor.last_uid
            session.merge(row)


def poll_all(database: Database, blobs: DirectoryBlobStore, outbox: Outbox, settings: Settings,
             fetched: Callable[[], None]) -> None:
    """Poll every configured mailbox, and again at once those with more waiting (a backlog drains
    without waiting for the next interval; imap_poller.drain_mailboxes); `fetched()` after each
    poll that brought mail, so intake processes one batch while the next is fetched."""
    def poll_one(pair: tuple[MailboxConfig, str]) -> PollResult:
        result = poll(database, blobs, outbox, pair[0], pair[1], settings)
        if result.fetched:
            fetched()
        return result

    drain_mailboxes(settings.mailboxes, poll_one)


def poll(database: Database, blobs: DirectoryBlobStore, outbox: Outbox, mailbox: MailboxConfig,
         channel_address: str, settings: Settings) -> PollResult:
    known: set[str] = set()

    def accept(raw: bytes) -> None:
        if not known:  # the inbox addresses, read once per poll instead of once per message
            with database.transaction() as session:
                known.update(queries.known_channels(session))
        result = handlers.accept(database, blobs, raw, [channel_address], "imap", settings, channels=known)
        if not (result.intake_ids or result.duplicates):
            raise RuntimeError(f"mailbox {mailbox.id}: channel {channel_address} is not an inbox address")

    def reject_oversized(uid: int, size: int) -> None:
        log.warning("mailbox %s: message UID %s of %s bytes exceeds the limit; left on the server",
                    mailbox.id, uid, size)

    result = poll_mailbox(mailbox, DatabaseCursorStore(database), accept, reject_oversized)
    observability.imap_polled(mailbox.id, result.error is None)
    with database.transaction() as session:
        handlers.record_mailbox_poll(session, outbox, mailbox.id, result.error, result.error_kind)
    return result
