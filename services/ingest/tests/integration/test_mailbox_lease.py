"""Only one ingest replica polls a given mailbox at a time (the lease on its cursor row), against
a real Dovecot and ingest's real PostgreSQL database: two pollers running at once on one mailbox
store each message exactly once, fetched by one of them; when the holder dies, the other takes
over once its lease has expired (and at once when it stopped cleanly and released it)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select, update

from ingest import mailbox_api
from ingest import mailboxes as ingest_mailboxes
from ingest.blobstore import DirectoryBlobStore
from ingest.models import Base, Channel, Intake, outbox
from ingest.models import MailboxCursor as CursorRow
from ingest.settings import Settings
from mailroom_shared.db import Database, utcnow
from mailroom_shared.messaging.outbox import Outbox

pytestmark = pytest.mark.integration

CHANNEL = "support@acme.test"
OUTBOX = Outbox(outbox, publishes={"message_received": 1, "message_quarantined": 1, "mailbox_unreachable": 1})


def email(n: int) -> bytes:
    return (f"From: Customer {n} <c{n}@example.org>\r\nTo: {CHANNEL}\r\nSubject: lease {n}\r\n"
            f"Message-ID: <lease-{n}@example.org>\r\n\r\nHello {n}.\r\n").encode()


@pytest.fixture
def ingest_db(make_database, tmp_path):
    database = Database(make_database("ingest"))
    Base.metadata.create_all(database.engine)
    with database.transaction() as session:
        session.add(Channel(address=CHANNEL, inbox_id="inbox-1"))
    yield database, DirectoryBlobStore(tmp_path / "blobs")
    database.dispose()


def stored(database) -> int:
    with database.transaction() as session:
        return session.scalar(select(func.count()).select_from(Intake))


def test_two_pollers_on_one_mailbox_store_each_message_once_and_hand_over(dovecot, ingest_db):
    database, blobs = ingest_db
    settings = Settings(mailbox_secret_key=Fernet.generate_key().decode(), imap_lease_seconds=60)
    with database.transaction() as session:
        mailbox_id = mailbox_api.create(session, settings, {
            "address": CHANNEL, "host": dovecot.host, "port": dovecot.port, "tls": "starttls",
            "ca_bundle": Path(dovecot.ca_file).read_text(), "username": dovecot.user, "auth": "password",
            "password": dovecot.password})["id"]
    with dovecot.client() as client:
        for n in range(120):
            client.append("INBOX", email(n))

    fetched = {"replica-a": 0, "replica-b": 0}
    start = threading.Barrier(2)

    def replica(owner: str) -> None:
        start.wait()
        for _ in range(6):  # each runs several timer ticks at the same time as the other
            for result in ingest_mailboxes.poll_all(database, blobs, OUTBOX, settings, lambda: None, owner=owner):
                assert result.error is None, result.error
                fetched[owner] += result.fetched

    threads = [threading.Thread(target=replica, args=(owner,)) for owner in fetched]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sum(fetched.values()) == 120, fetched  # nothing fetched twice
    assert sorted(fetched.values()) == [0, 120], fetched  # one replica polled it, the other left it
    assert stored(database) == 120
    holder = next(owner for owner, count in fetched.items() if count)
    other = next(owner for owner in fetched if owner != holder)
    with database.transaction() as session:
        cursor = session.get(CursorRow, mailbox_id)
        assert cursor.lease_owner == holder and cursor.messages_fetched == 120

    # the holder dies (no more ticks, no release): its lease still runs, the other keeps off
    with dovecot.client() as client:
        client.append("INBOX", email(500))
    [skipped] = ingest_mailboxes.poll_all(database, blobs, OUTBOX, settings, lambda: None, owner=other)
    assert skipped.fetched == 0 and stored(database) == 120
    # its lease runs out (as 60 s passing would make it): the other takes the mailbox over
    with database.transaction() as session:
        session.execute(update(CursorRow).where(CursorRow.mailbox_id == mailbox_id)
                        .values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    [taken] = ingest_mailboxes.poll_all(database, blobs, OUTBOX, settings, lambda: None, owner=other)
    assert taken.fetched == 1 and stored(database) == 121
    with database.transaction() as session:
        assert session.get(CursorRow, mailbox_id).lease_owner == other

    # a clean stop releases at once: the first replica, back, polls it at its next tick
    mailbox_api.release_leases(database, other)
    with dovecot.client() as client:
        client.append("INBOX", email(501))
    [back] = ingest_mailboxes.poll_all(database, blobs, OUTBOX, settings, lambda: None, owner=holder)
    assert back.fetched == 1 and stored(database) == 122


def test_the_lease_is_taken_by_one_of_many_at_once(ingest_db):
    """Twenty would-be holders race for one fresh mailbox's lease: exactly one gets it."""
    database, _blobs = ingest_db
    winners: list[str] = []
    start = threading.Barrier(20)

    def contend(owner: str) -> None:
        start.wait()
        if mailbox_api.acquire_lease(database, "fresh-mailbox", owner, 60):
            winners.append(owner)

    threads = [threading.Thread(target=contend, args=(f"replica-{n}",)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(winners) == 1
    assert mailbox_api.acquire_lease(database, "fresh-mailbox", winners[0], 60)  # the holder renews
