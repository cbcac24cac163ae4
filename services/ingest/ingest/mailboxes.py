"""Connected IMAP mailboxes, polled by the ingest service: the timer that runs every
INGEST_IMAP_POLL_SECONDS, and the glue between the IMAP poller (imap_poller.py) and ingest —
cursors in ingest's database, fetched mail into the intake (with the reply token it was delivered
for), oversized mail quarantined, failures recorded and announced. The mailboxes are the YAML
file's and those added through the API (mailbox_api.py); a lease lets one replica poll each."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from nameko.timer import Timer
from sqlalchemy.exc import IntegrityError

from ingest import handlers, mailbox_api, queries
from ingest.blobstore import DirectoryBlobStore
from ingest.domain.mailboxes import delivery_recipient
from ingest.imap_poller import ErrorKind, MailboxConfig, MailboxCursor, PollResult, drain_mailboxes, poll_mailbox
from ingest.intake import loaded_settings
from ingest.models import Intake
from ingest.models import MailboxCursor as CursorRow
from ingest.settings import Settings
from mailroom_shared import observability
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.db import Database, utcnow
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
    """The poller's cursors (UIDVALIDITY, last UID) in ingest's database. With `lease` (owner,
    seconds), each save also renews the owner's lease on the mailbox: a long poll (a backlog, a
    slow server) keeps it instead of another replica taking over mid-poll."""

    def __init__(self, database: Database, lease: tuple[str, float] | None = None):
        self.database = database
        self.lease = lease

    def load(self, mailbox_id: str) -> MailboxCursor:
        with self.database.transaction() as session:
            row = session.get(CursorRow, mailbox_id)
            return MailboxCursor(uidvalidity=row.uidvalidity, last_uid=row.last_uid) if row else MailboxCursor(None)

    def save(self, mailbox_id: str, cursor: MailboxCursor) -> None:
        with self.database.transaction() as session:
            row = session.get(CursorRow, mailbox_id) or CursorRow(mailbox_id=mailbox_id, consecutive_failures=0)
            row.uidvalidity, row.last_uid = cursor.uidvalidity, cursor.last_uid
            if self.lease and row.lease_owner == self.lease[0]:
                row.lease_expires_at = utcnow() + timedelta(seconds=self.lease[1])
            session.merge(row)


@dataclass(frozen=True)
class _Polled:
    """One mailbox to poll: from the YAML file (`config` set) or added through the API (opened,
    and its token refreshed, only by the replica that holds its lease)."""

    id: str
    config: MailboxConfig | None = None
    channel: str | None = None


def poll_all(database: Database, blobs: DirectoryBlobStore, outbox: Outbox, settings: Settings,
             fetched: Callable[[], None], owner: str | None = None) -> list[PollResult]:
    """Poll every configured mailbox (the YAML file's and the API's), and again at once those with
    more waiting (a backlog drains without waiting for the next interval; imap_poller.
    drain_mailboxes); `fetched()` after each poll that brought mail, so intake processes one batch
    while the next is fetched. A mailbox whose lease another replica holds is left to it."""
    owner = owner or mailbox_api.replica_id()

    def poll_one(entry: _Polled) -> PollResult:
        if not mailbox_api.acquire_lease(database, entry.id, owner, settings.imap_lease_seconds):
            return PollResult(mailbox_id=entry.id)  # another replica polls it
        if entry.config is not None:
            mailbox, channel = entry.config, entry.channel
        else:
            try:
                mailbox, channel = mailbox_api.poll_config(database, settings, entry.id)
            except mailbox_api.MailboxRemoved:
                return PollResult(mailbox_id=entry.id)
            except mailbox_api.MailboxUnusable as exc:
                return _unusable(database, outbox, entry.id, str(exc))
        result = poll(database, blobs, outbox, mailbox, channel, settings, lease=(owner, settings.imap_lease_seconds))
        if result.fetched:
            fetched()
        return result

    entries = [_Polled(mailbox.id, mailbox, channel) for mailbox, channel in settings.mailboxes]
    entries += [_Polled(ref.id) for ref in mailbox_api.api_mailboxes(database)]
    return drain_mailboxes(entries, poll_one)


def _unusable(database: Database, outbox: Outbox, mailbox_id: str, error: str) -> PollResult:
    result = PollResult(mailbox_id=mailbox_id, error=error, error_kind=ErrorKind.AUTH_FAILED)
    log.warning("mailbox %s: not polled: %s", mailbox_id, error)
    observability.imap_polled(mailbox_id, False)
    with database.transaction() as session:
        handlers.record_mailbox_poll(session, outbox, mailbox_id, result.error, result.error_kind)
        mailbox_api.record_status(session, mailbox_id, result)
    return result


def poll(database: Database, blobs: DirectoryBlobStore, outbox: Outbox, mailbox: MailboxConfig,
         channel_address: str, settings: Settings, lease: tuple[str, float] | None = None) -> PollResult:
    known: set[str] = set()

    def accept(raw: bytes) -> None:
        if not known:  # the inbox addresses, read once per poll instead of once per message
            with database.transaction() as session:
                known.update(queries.known_channels(session))
        # the reply token the message was delivered for (support+TOKEN@…), as SMTP would have seen it
        recipient = delivery_recipient(raw, channel_address)
        result = handlers.accept(database, blobs, raw, [recipient], "imap", settings, channels=known)
        if not (result.intake_ids or result.duplicates):
            raise RuntimeError(f"mailbox {mailbox.id}: channel {channel_address} is not an inbox address")

    def reject_oversized(uid: int, size: int) -> None:
        quarantine_oversized(database, blobs, outbox, settings, mailbox, channel_address, uid, size)

    result = poll_mailbox(mailbox, DatabaseCursorStore(database, lease), accept, reject_oversized)
    observability.imap_polled(mailbox.id, result.error is None)
    with database.transaction() as session:
        handlers.record_mailbox_poll(session, outbox, mailbox.id, result.error, result.error_kind)
        mailbox_api.record_status(session, mailbox.id, result)
    return result


def quarantine_oversized(database: Database, blobs: DirectoryBlobStore, outbox: Outbox, settings: Settings,
                         mailbox: MailboxConfig, channel_address: str, uid: int, size: int) -> None:
    """A message over the size limit, never downloaded, quarantined with the reason (it shows in
    /api/ingest/quarantine and its inbox; `message_quarantined`). The stored "raw message" is a
    note saying where the real one is: it stays on the server for an operator. Once per message."""
    reason = (f"oversized: IMAP message of {size} bytes is over the {settings.max_message_bytes} byte limit; "
              f"left on the server (mailbox {mailbox.id}, folder {mailbox.folder}, UID {uid})")
    log.warning("mailbox %s: %s", mailbox.id, reason)
    note = (f"Subject: Message too large ({size} bytes) left on the IMAP server\r\n"
            f"X-Mailroom-Quarantine: {reason}\r\n\r\n{reason}\r\n").encode()
    channel = try_normalise_email(channel_address) or channel_address.lower()
    intake = Intake(id=str(uuid.uuid4()), channel_address=channel, reply_token=None, via="imap",
                    dedupe_key=f"imap-oversized:{mailbox.id}:{uid}:{size}", blob_key=blobs.put(note), size=size,
                    envelope_from=None, status="stored", received_at=utcnow(), attempts=0)
    try:
        with database.transaction() as session:
            session.add(intake)
            session.flush()
            outbox.record_envelopes(session, [handlers._quarantine(outbox, settings, intake, reason)])
    except IntegrityError:  # quarantined by an earlier poll whose cursor was not saved
        log.info("mailbox %s: UID %s was already quarantined", mailbox.id, uid)
