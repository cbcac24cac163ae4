"""A bounce report becomes message_received (for the inbox, as before) and, in the same
transaction, the small delivery_report_received outbound subscribes to (#16); any other message
becomes message_received only."""

import pytest
from sqlalchemy import select

from ingest import handlers
from ingest.analyser import InProcessAnalyser
from ingest.blobstore import DirectoryBlobStore
from ingest.models import Base, outbox
from ingest.service import IngestService
from ingest.settings import Settings
from mailroom_shared.db import Database
from mailroom_shared.messaging.outbox import Outbox

CHANNEL = "support@acme.test"
OUTBOX = Outbox(outbox, publishes=IngestService.outbox.publishes)  # what the service declares

DSN = (
    "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
    f"To: {CHANNEL}\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\n"
    "Message-ID: <dsn-1@mx.example.net>\r\n"
    "Date: Mon, 07 Dec 2026 04:00:00 +0000\r\n"
    "Auto-Submitted: auto-replied\r\n"
    "MIME-Version: 1.0\r\n"
    'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
    "--B\r\nContent-Type: text/plain\r\n\r\n"
    "<bob@example.com>: host mx.example.net said: 550 5.1.1 User unknown\r\n\r\n"
    "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
    "Reporting-MTA: dns; mx.example.net\r\n\r\n"
    "Final-Recipient: rfc822; bob@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
    "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    f"From: {CHANNEL}\r\nTo: bob@example.com\r\nSubject: Re: Where is my order?\r\n"
    "Message-ID: <sent-1@acme.test>\r\n\r\n"
    "--B--\r\n").encode()

ORDINARY = (
    "From: Ada <ada@example.org>\r\n"
    f"To: {CHANNEL}\r\n"
    "Subject: Order #42\r\n"
    "Message-ID: <q1@example.org>\r\n\r\n"
    "Hello, where is my order? It failed with 5.1.1 says my mailer, but this is no bounce.\r\n").encode()


@pytest.fixture
def ingest(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'ingest.db'}")
    Base.metadata.create_all(database.engine)
    with database.transaction() as session:
        handlers.replace_inbox(session, "inbox-1", [CHANNEL], ["agent@acme.test"])
    yield database, DirectoryBlobStore(tmp_path / "blobs")
    database.dispose()


def process(database, blobs, raw: bytes) -> list[tuple[str, dict]]:
    [intake_id] = handlers.accept(database, blobs, raw, [CHANNEL], "smtp", Settings()).intake_ids
    assert handlers.process_batch(database, OUTBOX, Settings(blob_dir=blobs.root), InProcessAnalyser(), limit=16) == 1
    with database.transaction() as session:
        return intake_id, [(row.event_type, row.envelope) for row in session.execute(
            select(outbox.c.event_type, outbox.c.envelope).order_by(outbox.c.id))]


def test_a_bounce_report_is_announced_to_outbound_with_what_matching_it_needs(ingest):
    intake_id, events = process(*ingest, DSN)
    assert [name for name, _ in events] == ["message_received", "delivery_report_received"]
    (_, received), (_, report) = events
    assert received["data"]["flags"]["bounce"] is True  # the inbox still gets the whole message
    assert report["type"] == "mailroom.delivery_report_received.v1" and report["subject"] == intake_id
    assert report["data"] == {
        "intake_id": intake_id, "raw_url": f"/api/ingest/messages/{intake_id}/raw",
        "reason": "<bob@example.com>: host mx.example.net said: 550 5.1.1 User unknown",
        "bounced_message_ids": ["sent-1@acme.test"],
        "bounced_recipients": [{"email": "bob@example.com", "action": "failed", "status": "5.1.1",
                                "diagnostic": None}]}
    # the same trace as the message it reports on
    assert report["traceparent"].split("-")[1] == received["traceparent"].split("-")[1]


def test_any_other_message_is_not_announced_to_outbound(ingest):
    _, events = process(*ingest, ORDINARY)
    assert [name for name, _ in events] == ["message_received"]
