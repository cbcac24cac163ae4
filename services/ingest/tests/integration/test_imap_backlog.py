"""A mailbox with a backlog drains at once, not one batch per poll interval (#16): the poll is
repeated while the server has more, round robin across mailboxes, against a real Dovecot and
ingest's real database. Counts and poll order are asserted, never time."""

from __future__ import annotations

import pytest
from imapclient import IMAPClient
from sqlalchemy import func, select

from ingest import mailboxes as ingest_mailboxes
from ingest.blobstore import DirectoryBlobStore
from ingest.imap_poller import MailboxConfig, MailboxCursor, drain_mailboxes, poll_mailbox
from ingest.models import Base, Channel, Intake, outbox
from ingest.models import MailboxCursor as CursorRow
from ingest.settings import Settings
from mailroom_shared.db import Database
from mailroom_shared.messaging.outbox import Outbox

pytestmark = pytest.mark.integration

CHANNEL = "support@acme.test"
OUTBOX = Outbox(outbox, publishes={"message_received": 1, "message_quarantined": 1, "mailbox_unreachable": 1})


def email(tag: str, n: int) -> bytes:
    return (f"From: Customer {n} <c{n}@example.org>\r\nTo: {CHANNEL}\r\nSubject: {tag} {n}\r\n"
            f"Message-ID: <{tag}-{n}@example.org>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\n"
            f"Hello, this is {tag} {n}.\r\n").encode()


def fill(dovecot, folder: str, tag: str, count: int) -> None:
    with dovecot.client() as client:
        if folder != "INBOX" and not client.folder_exists(folder):
            client.create_folder(folder)
        for n in range(count):
            client.append(folder, email(tag, n))


def mailbox(dovecot, mailbox_id: str, folder: str = "INBOX", **overrides) -> MailboxConfig:
    return MailboxConfig(id=mailbox_id, host=dovecot.host, port=dovecot.port, username=dovecot.user,
                         password=dovecot.password, ssl=False, timeout=10, folder=folder, **overrides)


class MemoryCursors:
    def __init__(self):
        self.data: dict[str, MailboxCursor] = {}

    def load(self, mailbox_id):
        return self.data.get(mailbox_id, MailboxCursor(None))

    def save(self, mailbox_id, cursor):
        self.data[mailbox_id] = MailboxCursor(cursor.uidvalidity, cursor.last_uid)


@pytest.fixture
def ingest_db(make_database, tmp_path):
    database = Database(make_database("ingest"))
    Base.metadata.create_all(database.engine)
    with database.transaction() as session:
        session.add(Channel(address=CHANNEL, inbox_id="inbox-1"))
    yield database, DirectoryBlobStore(tmp_path / "blobs")
    database.dispose()


def test_a_backlog_of_200_is_stored_in_one_timer_tick_round_robin_with_another_mailbox(dovecot, ingest_db):
    """What the ingest service's timer runs once: 200 waiting in one mailbox, 60 in another, all
    stored by that one call (before: 50 per mailbox per INGEST_IMAP_POLL_SECONDS), the two
    mailboxes taking turns while both have more."""
    database, blobs = ingest_db
    fill(dovecot, "INBOX", "backlog", 200)
    fill(dovecot, "Team2", "other", 60)
    settings = Settings(mailboxes=((mailbox(dovecot, "big"), CHANNEL), (mailbox(dovecot, "small", "Team2"), CHANNEL)))
    polled: list[str] = []
    original_poll = ingest_mailboxes.poll

    def counting_poll(database, blobs, outbox, mailbox_config, channel, settings, **options):
        polled.append(mailbox_config.id)
        return original_poll(database, blobs, outbox, mailbox_config, channel, settings, **options)

    fetched_calls = []
    ingest_mailboxes.poll = counting_poll
    try:
        ingest_mailboxes.poll_all(database, blobs, OUTBOX, settings, fetched=lambda: fetched_calls.append(1))
    finally:
        ingest_mailboxes.poll = original_poll

    assert polled == ["big", "small", "big", "small", "big", "big"]  # 50+50+50+50 and 50+10, taking turns
    assert len(fetched_calls) == 6  # the intake processor is woken after every batch, not at the end
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Intake)) == 260
        assert session.scalar(select(func.count(func.distinct(Intake.dedupe_key)))) == 260
        cursors = {row.mailbox_id: row.last_uid for row in session.scalars(select(CursorRow))}
        assert cursors == {"big": 200, "small": 60}

    # the next tick finds nothing new: one poll each, nothing stored twice
    polled.clear()
    ingest_mailboxes.poll = counting_poll
    try:
        ingest_mailboxes.poll_all(database, blobs, OUTBOX, settings, fetched=lambda: fetched_calls.append(1))
    finally:
        ingest_mailboxes.poll = original_poll
    assert polled == ["big", "small"] and len(fetched_calls) == 6
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Intake)) == 260


def test_the_drain_is_bounded_and_the_rest_comes_at_the_next_tick(dovecot):
    fill(dovecot, "INBOX", "bounded", 120)
    cursors, accepted = MemoryCursors(), []
    config = mailbox(dovecot, "mbx", batch_size=20)

    first = drain_mailboxes([config], lambda cfg: poll_mailbox(cfg, cursors, accepted.append), max_rounds=3)
    assert [r.fetched for r in first] == [20, 20, 20] and first[-1].has_more is True
    assert len(accepted) == 60

    second = drain_mailboxes([config], lambda cfg: poll_mailbox(cfg, cursors, accepted.append), max_rounds=10)
    assert [r.fetched for r in second] == [20, 20, 20]
    assert second[-1].has_more is False
    assert accepted == [email("bounded", n) for n in range(120)]  # each once, oldest first


def test_a_failed_poll_is_not_repeated_at_once(dovecot):
    """accept fails on the 30th message: the poll stops with has_more, and is not hammered again
    within the tick; the next tick resumes after the last stored message."""
    fill(dovecot, "INBOX", "failing", 100)
    cursors, accepted = MemoryCursors(), []

    def accept(raw):
        if len(accepted) == 29 and not getattr(accept, "failed", False):
            accept.failed = True
            raise RuntimeError("blob store is down")
        accepted.append(raw)

    config = mailbox(dovecot, "mbx")
    first = drain_mailboxes([config], lambda cfg: poll_mailbox(cfg, cursors, accept))
    assert len(first) == 1 and not first[0].ok and first[0].has_more
    assert len(accepted) == 29

    second = drain_mailboxes([config], lambda cfg: poll_mailbox(cfg, cursors, accept))
    assert [r.fetched for r in second] == [50, 21]
    assert accepted == [email("failing", n) for n in range(100)]


def test_an_unreachable_mailbox_does_not_stop_the_others_draining(dovecot):
    fill(dovecot, "INBOX", "alive", 75)
    cursors, accepted = MemoryCursors(), []
    dead = MailboxConfig(id="dead", host="127.0.0.1", port=1, username="x", password="y", ssl=False, timeout=2)
    results = drain_mailboxes([dead, mailbox(dovecot, "alive")],
                              lambda cfg: poll_mailbox(cfg, cursors, accepted.append))
    assert [(r.mailbox_id, r.ok, r.fetched) for r in results] == [("dead", False, 0), ("alive", True, 50),
                                                                   ("alive", True, 25)]
    assert len(accepted) == 75


class CountingClient(IMAPClient):
    fetches: list[int] = []

    def fetch(self, messages, data, modifiers=None):
        if [d if isinstance(d, bytes) else d.encode() for d in data] == [b"BODY.PEEK[]"]:
            CountingClient.fetches.append(len(messages))
        return super().fetch(messages, data, modifiers)


def test_bodies_come_several_per_fetch_within_the_chunk_bounds(dovecot):
    fill(dovecot, "INBOX", "chunked", 30)
    big = email("chunked-big", 0).replace(b"Hello", b"x" * 5_000)
    with dovecot.client() as client:
        client.append("INBOX", big)
    CountingClient.fetches = []
    cursors, accepted = MemoryCursors(), []
    config = mailbox(dovecot, "mbx", fetch_chunk_messages=10, fetch_chunk_bytes=4_000)
    result = poll_mailbox(config, cursors, accepted.append, client_factory=CountingClient)
    assert result.ok and result.fetched == 31
    # 30 small ones of ~170 bytes: 10 per FETCH (the message bound); the 5 KB one alone (the byte bound)
    assert CountingClient.fetches == [10, 10, 10, 1]
    assert accepted == [email("chunked", n) for n in range(30)] + [big]


def test_a_failure_mid_chunk_keeps_what_was_accepted_before_it(dovecot):
    fill(dovecot, "INBOX", "midchunk", 20)
    cursors, accepted = MemoryCursors(), []

    def accept(raw):
        if len(accepted) == 14 and not getattr(accept, "failed", False):
            accept.failed = True
            raise RuntimeError("database is down")
        accepted.append(raw)

    config = mailbox(dovecot, "mbx", fetch_chunk_messages=10, mark_seen=True)
    first = poll_mailbox(config, cursors, accept)
    assert first.error_kind == "accept_failed" and first.fetched == 14
    assert cursors.data["mbx"].last_uid == 14  # past the 14 accepted, not past the failed 15th
    seen = [uid for uid, flags in dovecot.flags().items() if b"\\Seen" in flags]
    assert sorted(seen) == list(range(1, 15))  # flagged only once the cursor was saved past them
    poll_mailbox(config, cursors, accept)
    assert accepted == [email("midchunk", n) for n in range(20)]  # the rest, each once
