"""Glue between the IMAP poller and the intake: cursors in ingest's database, accepted mail
into the intake log, unreachable mailboxes reported as events."""

from __future__ import annotations

import logging

from ingest import intake
from ingest.blobstore import DirectoryBlobStore
from ingest.imap_poller import MailboxConfig, MailboxCursor, PollResult, poll_mailbox
from ingest.models import MailboxCursor as CursorRow
from mailroom_shared.db import Database
from mailroom_shared.messaging.outbox import Outbox

log = logging.getLogger(__name__)


class DatabaseCursorStore:
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


def poll(database: Database, blobs: DirectoryBlobStore, outbox: Outbox, mailbox: MailboxConfig,
         channel_address: str, settings: intake.IntakeSettings) -> PollResult:
    def accept(raw: bytes) -> None:
        result = intake.accept(database, blobs, raw, [channel_address], "imap", settings)
        if not (result.intake_ids or result.duplicates):
            raise RuntimeError(f"mailbox {mailbox.id}: channel {channel_address} is not an inbox address")

    def reject_oversized(uid: int, size: int) -> None:
        log.warning("mailbox %s: message UID %s of %s bytes exceeds the limit; left on the server",
                    mailbox.id, uid, size)

    result = poll_mailbox(mailbox, DatabaseCursorStore(database), accept, reject_oversized)
    with database.transaction() as session:
        row = session.get(CursorRow, mailbox.id) or CursorRow(mailbox_id=mailbox.id, last_uid=0)
        if result.ok:
            row.consecutive_failures, row.last_error = 0, None
        else:
            row.consecutive_failures = (row.consecutive_failures or 0) + 1
            row.last_error = result.error
            log.error("mailbox %s: %s (%s failures in a row)", mailbox.id, result.error, row.consecutive_failures)
            if row.consecutive_failures == 1:  # announce the change, not every failed poll
                outbox.record(session, "mailbox_unreachable", mailbox.id, {
                    "mailbox_id": mailbox.id, "error": f"{result.error_kind}: {result.error}",
                    "consecutive_failures": row.consecutive_failures})
        session.merge(row)
    return result
