"""Ingest's use cases called directly, against an SQLite file holding ingest's tables and a blob
directory: no broker, no PostgreSQL, no SMTP."""

import hashlib
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from ingest import handlers, queries
from ingest.analyser import InProcessAnalyser
from ingest.blobstore import DirectoryBlobStore
from ingest.domain.downloads import attachment_download
from ingest.domain.model import ParseLimits
from ingest.models import Base, Channel, Intake, MailboxCursor, TrustedSender, outbox
from ingest.settings import Settings
from mailroom_shared.db import Database
from mailroom_shared.http import HttpError, NotFound, PayloadTooLarge
from mailroom_shared.messaging.outbox import Outbox

CHANNEL = "support@acme.test"
OUTBOX = Outbox(outbox)


@pytest.fixture
def ingest(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'ingest.db'}")
    Base.metadata.create_all(database.engine)
    with database.transaction() as session:
        handlers.replace_inbox(session, "inbox-1", [CHANNEL.upper()], ["Agent@Acme.test"])
    yield database, DirectoryBlobStore(tmp_path / "blobs")
    database.dispose()


def email(subject="Order #42", message_id="<q1@example.org>", attachment=None) -> bytes:
    message = EmailMessage()
    message["From"] = "Ada <ada@example.org>"
    message["To"] = CHANNEL
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content("Hello, where is my order?\n")
    if attachment:
        message.add_attachment(attachment, maintype="application", subtype="pdf", filename="invoice.pdf")
    return message.as_bytes()


def events(database) -> list[tuple[str, dict]]:
    with database.transaction() as session:
        return [(row.event_type, row.envelope["data"]) for row in session.execute(
            select(outbox.c.event_type, outbox.c.envelope).order_by(outbox.c.id))]


def test_inbox_updated_replaces_our_copy_of_the_inbox(ingest):
    database, _ = ingest
    with database.transaction() as session:
        assert queries.known_channels(session) == {CHANNEL}
        assert session.execute(select(TrustedSender.email)).scalars().all() == ["agent@acme.test"]
        handlers.replace_inbox(session, "inbox-1", ["help@acme.test"], [])
    with database.transaction() as session:
        assert session.execute(select(Channel.address)).scalars().all() == ["help@acme.test"]
        assert session.execute(select(TrustedSender.email)).scalars().all() == []


def test_accepted_mail_is_stored_once_per_channel_with_its_reply_token(ingest):
    database, blobs = ingest
    raw = email()
    first = handlers.accept(database, blobs, raw, ["Support+Tok123456@acme.test", "nobody@acme.test"], "smtp",
                            Settings())
    again = handlers.accept(database, blobs, raw, [CHANNEL], "smtp", Settings())
    assert len(first.intake_ids) == 1 and first.unknown_recipients == ["nobody@acme.test"]
    assert (again.intake_ids, again.duplicates) == ([], [CHANNEL])
    with database.transaction() as session:
        row = session.get(Intake, first.intake_ids[0])
        assert (row.channel_address, row.reply_token, row.status, row.dedupe_key) == (
            CHANNEL, "Tok123456", "stored", "q1@example.org")
    assert blobs.get(row.blob_key) == raw


def test_posted_mail_answers_what_happened(ingest):
    database, blobs = ingest
    small = Settings(max_message_bytes=10_000)
    assert handlers.accept_posted(database, blobs, email(), CHANNEL, small)["duplicate"] is False
    assert handlers.accept_posted(database, blobs, email(), CHANNEL, small) == {"intake_ids": [], "duplicate": True}
    with pytest.raises(NotFound, match="stranger@example.com is not an inbox channel address"):
        handlers.accept_posted(database, blobs, email(message_id="<q2@example.org>"), "stranger@example.com", small)
    with pytest.raises(HttpError, match="empty body"):
        handlers.accept_posted(database, blobs, b"  \r\n", CHANNEL, small)
    with pytest.raises(PayloadTooLarge, match="exceeds the 10000 byte limit"):
        handlers.accept_posted(database, blobs, email(attachment=b"x" * 20_000), CHANNEL, small)


def test_stored_mail_becomes_message_received_and_its_attachment_can_be_restored(ingest):
    database, blobs = ingest
    pdf = b"%PDF-1.4 " + bytes(range(256)) * 4
    [intake_id] = handlers.accept(database, blobs, email(attachment=pdf), [CHANNEL], "http", Settings()).intake_ids

    assert handlers.process_batch(database, OUTBOX, Settings(blob_dir=blobs.root), InProcessAnalyser(), limit=16) == 1
    assert handlers.process_batch(database, OUTBOX, Settings(blob_dir=blobs.root), InProcessAnalyser(), limit=16) == 0

    [(event_type, data)] = events(database)
    assert event_type == "message_received"
    assert (data["intake_id"], data["subject"], data["via"]) == (intake_id, "Order #42", "http")
    assert data["raw_url"] == f"/api/ingest/messages/{intake_id}/raw"
    assert data["received_at"].endswith("+00:00")
    [attachment] = data["attachments"]
    assert attachment["sha256"] == hashlib.sha256(pdf).hexdigest()
    with database.transaction() as session:
        assert queries.intake_view(session, intake_id)["status"] == "processed"
        meta, raw_key = queries.attachment_of(session, intake_id, attachment["sha256"])
    (blobs.root / attachment["sha256"][:2] / attachment["sha256"][2:4] / attachment["sha256"]).unlink()
    assert queries.attachment_bytes(blobs, raw_key, attachment["sha256"]) == pdf  # extracted again
    assert blobs.exists(attachment["sha256"])
    assert attachment_download(meta["filename"], meta["content_type"])["mimetype"] == "application/octet-stream"


def test_mail_too_complex_to_parse_is_quarantined(ingest):
    database, blobs = ingest
    [intake_id] = handlers.accept(database, blobs, email(attachment=b"x" * 100), [CHANNEL], "smtp",
                                  Settings()).intake_ids
    strict = Settings(limits=ParseLimits(max_parts=1), blob_dir=blobs.root)
    handlers.process_batch(database, OUTBOX, strict, InProcessAnalyser(), limit=16)
    [(event_type, data)] = events(database)
    assert event_type == "message_quarantined" and data["reason"].startswith("too complex to parse safely")
    with pytest.raises(NotFound), database.transaction() as session:
        queries.intake_view(session, "no-such-id")
    with database.transaction() as session:
        assert queries.intake_view(session, intake_id)["status"] == "quarantined"


def test_an_unreachable_mailbox_is_announced_once_until_it_works_again(ingest):
    database, _ = ingest
    for error in ("connection refused", "connection refused", None, "timed out"):
        with database.transaction() as session:
            handlers.record_mailbox_poll(session, OUTBOX, "team", error, None if error is None else "unreachable")
    announced = [data for event_type, data in events(database) if event_type == "mailbox_unreachable"]
    assert [(a["error"], a["consecutive_failures"]) for a in announced] == [
        ("unreachable: connection refused", 1), ("unreachable: timed out", 1)]
    with database.transaction() as session:
        assert session.get(MailboxCursor, "team").consecutive_failures == 1
