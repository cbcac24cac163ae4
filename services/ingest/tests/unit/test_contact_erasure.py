"""ingest's part of a contact's erasure (issue #17, erasure.py), called directly against an SQLite
file and a blob directory: the person's intake rows and blobs go, a raw blob another message
still uses stays, someone else's mail is untouched, and a redelivered erasure changes nothing more."""

import datetime as dt
import hashlib
import uuid

import pytest
from sqlalchemy import select

from ingest import erasure
from ingest.blobstore import BlobNotFound, DirectoryBlobStore
from ingest.models import Base, Intake, outbox
from mailroom_shared.db import Database
from mailroom_shared.messaging.outbox import Outbox

OUTBOX = Outbox(outbox)


@pytest.fixture
def ingest(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'ingest.db'}")
    Base.metadata.create_all(database.engine)
    yield database, DirectoryBlobStore(tmp_path / "blobs")
    database.dispose()


def stored(session, blobs, raw: bytes, envelope_from=None, attachment: bytes | None = None,
           channel="support@acme.test", status="processed") -> str:
    key = blobs.put(raw)
    attachments = []
    if attachment is not None:
        attachments.append({"sha256": blobs.put(attachment, durable=False), "filename": "a.pdf"})
    intake_id = str(uuid.uuid4())
    session.add(Intake(id=intake_id, channel_address=channel, via="smtp", dedupe_key=intake_id, blob_key=key,
                       size=len(raw), envelope_from=envelope_from, status=status, attachments=attachments,
                       received_at=dt.datetime.now(dt.UTC)))
    return intake_id


def erased_event(database):
    with database.transaction() as session:
        return [row.envelope["data"] for row in session.execute(
            select(outbox.c.envelope).where(outbox.c.event_type == "contact_mail_erased"))]


def test_the_persons_mail_and_blobs_go_and_a_shared_raw_blob_and_others_mail_stay(ingest):
    database, blobs = ingest
    with database.transaction() as session:
        by_id = stored(session, blobs, b"From: ada@example.com\r\n\r\nsecret", attachment=b"%PDF ada")
        stored(session, blobs, b"From: x\r\n\r\nover smtp", envelope_from="Ada@Example.com")
        # the same bytes to a second inbox, not on the person's timeline: its raw blob must stay readable
        shared_raw = b"From: ada@example.com\r\n\r\nto two inboxes"
        mine = stored(session, blobs, shared_raw)
        other_inbox = stored(session, blobs, shared_raw, channel="billing@acme.test")
        bob = stored(session, blobs, b"From: bob@example.com\r\n\r\nbob", envelope_from="bob@example.com")
    data = {"erasure_id": "e-1", "contact_id": "c-1", "emails": ["ADA@example.com"],
            "intake_ids": [by_id, mine, str(uuid.uuid4())]}
    with database.transaction() as session:
        counts = erasure.erase_contact(session, blobs, OUTBOX, data)
    assert counts == {"messages": 3, "raw_messages": 2, "attachments": 1, "not_yet_processed": 0,
                      "pending_events": 0}
    with database.transaction() as session:
        left = set(session.execute(select(Intake.id)).scalars())
    assert left == {other_inbox, bob}
    for gone in (b"From: ada@example.com\r\n\r\nsecret", b"From: x\r\n\r\nover smtp", b"%PDF ada"):
        with pytest.raises(BlobNotFound):
            blobs.get(hashlib.sha256(gone).hexdigest())
    assert blobs.get(hashlib.sha256(shared_raw).hexdigest()) == shared_raw
    assert blobs.get(hashlib.sha256(b"From: bob@example.com\r\n\r\nbob").hexdigest()).endswith(b"bob")
    assert erased_event(database) == [{"erasure_id": "e-1", "contact_id": "c-1", "erased": counts}]

    # redelivered (at-least-once): nothing more to erase, and still confirmed
    with database.transaction() as session:
        assert erasure.erase_contact(session, blobs, OUTBOX, data) == {
            "messages": 0, "raw_messages": 0, "attachments": 0, "not_yet_processed": 0, "pending_events": 0}


def test_hostile_input_erases_nothing_else(ingest):
    database, blobs = ingest
    with database.transaction() as session:
        kept = stored(session, blobs, b"From: bob@example.com\r\n\r\nbob", envelope_from="bob@example.com")
    hostile = {"erasure_id": "e-2", "contact_id": "c-2", "emails": ["%", "not an address", "' OR 1=1 --"],
               "intake_ids": ["%", "' OR '1'='1"], "identities": [{"kind": "phone"}]}
    with database.transaction() as session:
        assert erasure.erase_contact(session, blobs, OUTBOX, hostile)["messages"] == 0
    with database.transaction() as session:
        assert session.get(Intake, kept) is not None


def test_the_directory_store_deletes_once_and_never_outside_its_root(tmp_path):
    blobs = DirectoryBlobStore(tmp_path / "blobs")
    key = blobs.put(b"bytes")
    assert blobs.delete(key) is True and not blobs.exists(key)
    assert blobs.delete(key) is False  # again: no error
    outside = tmp_path / "outside"
    outside.write_bytes(b"x")
    assert blobs.delete("../outside") is False and outside.exists()


def test_mail_still_in_the_intake_queue_is_erased_by_its_headers_and_its_unrelayed_events_dropped(ingest):
    """Accepted before the erasure, not analysed yet (or quarantined): not on any timeline and
    sent from another envelope sender (a mailing service's bounce address), found by From,
    Sender or Reply-To. Mail of someone else in the queue stays, and so does an unreadable one."""
    database, blobs = ingest
    with database.transaction() as session:
        queued = stored(session, blobs, b"From: Ada <Ada@Example.com>\r\nSubject: secret\r\n\r\nqueued",
                        envelope_from="bounces+123@esp.example", status="stored")
        via_reply_to = stored(session, blobs, b"From: forms@site.example\r\nReply-To: ada@example.com\r\n\r\nform",
                              status="quarantined")
        analysed = stored(session, blobs, b"From: ada@example.com\r\n\r\nanalysed: not on her timeline",
                          envelope_from="bounces+9@esp.example")  # processed: found by intake_ids only
        bobs = stored(session, blobs, b"From: bob@example.com\r\nCc: ada@example.com\r\n\r\nbob's", status="stored")
        garbage = stored(session, blobs, b"\xff\xfe\x00 not a header block", status="stored")
        OUTBOX.record(session, "contact_mail_erased", "c-x", {
            "erasure_id": "e-x", "contact_id": "c-x", "erased": {}})  # the erasure's own events stay
    data = {"erasure_id": "e-3", "contact_id": "c-3", "emails": ["ada@example.com"], "intake_ids": []}
    with database.transaction() as session:
        counts = erasure.erase_contact(session, blobs, OUTBOX, data)
    assert counts["messages"] == 2 and counts["not_yet_processed"] == 2
    with database.transaction() as session:
        left = set(session.execute(select(Intake.id)).scalars())
    assert left == {analysed, bobs, garbage}
    assert queued not in left and via_reply_to not in left


def test_header_addresses_reads_only_the_header_block():
    assert erasure.header_addresses(b"From: A <A@X.example>\r\nSender: s@x.example\r\n\r\nFrom: b@y.example") == {
        "a@x.example", "s@x.example"}
    assert erasure.header_addresses(b"") == set()
    assert erasure.header_addresses(b"From: =?utf-8?q?\xff?= <%@x>\n\n") <= {"%@x"}
