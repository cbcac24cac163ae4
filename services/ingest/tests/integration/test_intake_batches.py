"""Intake processing in batches (one transaction for the mail waiting), against the real
PostgreSQL: every message still gets its own outcome, and a hostile one is quarantined alone."""

import pytest
from sqlalchemy import event, select, update

from ingest import handlers
from ingest.blobstore import DirectoryBlobStore
from ingest.models import Base, Channel, Intake, outbox
from ingest.settings import Settings
from mailroom_shared.db import Database
from mailroom_shared.messaging.outbox import Outbox

pytestmark = pytest.mark.integration

CHANNEL = "support@acme.test"


def email(n: int) -> bytes:
    return (f"From: Customer {n} <c{n}@example.org>\r\nTo: {CHANNEL}\r\nSubject: question {n}\r\n"
            f"Message-ID: <q{n}@example.org>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\n"
            f"Hello, this is question {n}.\r\n").encode()


def nested(depth: int) -> bytes:
    """Deeper MIME nesting than the parse limits allow: quarantined, never parsed."""
    head = f"From: x@example.org\r\nTo: {CHANNEL}\r\nSubject: deep\r\nMessage-ID: <deep@example.org>\r\n"
    body = "text\r\n"
    for level in range(depth):
        body = (f"Content-Type: multipart/mixed; boundary=b{level}\r\n\r\n--b{level}\r\n{body}"
                f"\r\n--b{level}--\r\n")
    return (head + body).encode()


@pytest.fixture
def ingest_db(make_database, tmp_path):
    database = Database(make_database("ingest"))
    Base.metadata.create_all(database.engine)
    with database.transaction() as session:
        session.add(Channel(address=CHANNEL, inbox_id="inbox-1"))
    yield database, DirectoryBlobStore(tmp_path / "blobs")
    database.dispose()


def test_waiting_mail_is_processed_in_one_transaction_each_message_with_its_own_outcome(ingest_db):
    database, blobs = ingest_db
    settings = Settings()
    for n in range(5):
        handlers.accept(database, blobs, email(n), [CHANNEL], "smtp", settings)
    handlers.accept(database, blobs, nested(60), [CHANNEL], "smtp", settings)
    commits = []
    event.listen(database.engine, "commit", lambda _conn: commits.append(1))

    assert handlers.process_batch(database, blobs, Outbox(outbox), settings, limit=16) == 6
    assert len(commits) == 1
    assert handlers.process_batch(database, blobs, Outbox(outbox), settings, limit=16) == 0

    with database.transaction() as session:
        statuses = sorted(session.execute(select(Intake.status)).scalars())
        published = sorted(session.execute(select(outbox.c.event_type)).scalars())
        subjects = sorted(row["data"]["subject"] for row in session.execute(
            select(outbox.c.envelope).where(outbox.c.event_type == "message_received")).scalars())
    assert statuses == ["processed"] * 5 + ["quarantined"]
    assert published == ["message_quarantined"] + ["message_received"] * 5
    assert subjects == [f"question {n}" for n in range(5)]


def test_a_batch_takes_at_most_its_limit_oldest_first(ingest_db):
    database, blobs = ingest_db
    settings = Settings()
    for n in range(5):
        handlers.accept(database, blobs, email(n), [CHANNEL], "smtp", settings)
    assert handlers.process_batch(database, blobs, Outbox(outbox), settings, limit=2) == 2
    with database.transaction() as session:
        done = sorted(session.execute(select(Intake.dedupe_key).where(Intake.status == "processed")).scalars())
    assert done == ["q0@example.org", "q1@example.org"]


def test_a_message_whose_event_the_catalogue_refuses_is_quarantined_not_retried_forever(ingest_db):
    """An event that fails validation used to fail its transaction on every pass, holding back
    all the mail behind it. Now its message is quarantined with the reason and the rest flows."""
    database, blobs = ingest_db
    settings = Settings()
    handlers.accept(database, blobs, email(1), [CHANNEL], "smtp", settings)
    handlers.accept(database, blobs, email(2), [CHANNEL], "smtp", settings)
    with database.transaction() as session:  # a channel the catalogue does not know (`via` is an enum)
        session.execute(update(Intake).where(Intake.dedupe_key == "q1@example.org").values(via="pigeon"))

    assert handlers.process_batch(database, blobs, Outbox(outbox), settings, limit=16) == 2

    with database.transaction() as session:
        rows = {row.dedupe_key: (row.status, row.reason or "") for row in session.execute(select(Intake)).scalars()}
    assert rows["q2@example.org"] == ("processed", "")
    assert rows["q1@example.org"][0] == "quarantined" and "InvalidEvent" in rows["q1@example.org"][1]
