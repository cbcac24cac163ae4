"""The S3 blob store (INGEST_BLOB_STORE=s3) against a local S3-compatible server started here:
moto's server mode, a real HTTP endpoint the SDK talks to as it would to S3 or MinIO. Then the
whole path: mail taken by the real SMTP listener, stored in the bucket, published, downloaded."""

from __future__ import annotations

import email.policy
import hashlib
import os
import smtplib
import subprocess
import sys
import uuid
from email.message import EmailMessage

import pytest
from moto.server import ThreadedMotoServer

from ingest.blobstore import (
    STREAM_CHUNK_BYTES,
    BlobNotFound,
    BlobStoreUnavailable,
    DirectoryBlobStore,
    S3Location,
    open_blob_store,
)
from ingest.s3_blobstore import S3BlobStore
from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import INGEST
from mailroom_testing.stack import free_port
from mailroom_testing.subscriber import EventSubscriber

pytestmark = pytest.mark.integration

CHANNEL = "support@mailroom.test"
REGION = "eu-west-1"
SECRET = "s3-secret-that-must-never-be-logged-" + uuid.uuid4().hex
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "mailroom-test-key", "AWS_SECRET_ACCESS_KEY": SECRET}


@pytest.fixture
def s3_server(monkeypatch):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def location(endpoint: str, bucket: str | None = None, **options) -> S3Location:
    return S3Location(bucket=bucket or f"mailroom-{uuid.uuid4().hex[:12]}", endpoint_url=endpoint, region=REGION,
                      addressing_style="path", **options)


def new_store(endpoint: str, **options) -> S3BlobStore:
    store = S3BlobStore(location(endpoint, **options))
    store.client.create_bucket(Bucket=store.location.bucket,
                               CreateBucketConfiguration={"LocationConstraint": REGION})
    return store


def test_bytes_put_are_read_back_whole_in_part_and_streamed_under_their_sha256(s3_server):
    store = new_store(s3_server, prefix="mail/raw/", server_side_encryption="AES256")
    data = b"From: ada@example.com\r\nSubject: hi\r\n\r\n" + bytes(range(256)) * 10
    key = store.put(data)
    assert key == hashlib.sha256(data).hexdigest()
    assert store.get(key) == data and store.exists(key)
    assert store.head(key, 20) == data[:20]  # a ranged read: the header block only
    assert store.head(key, 10**6) == data
    stream = store.stream(key)
    assert stream.size == len(data) and b"".join(stream) == data
    stream.close()
    # the same layout as the directory store, under the prefix: a copied tree is a working store
    stored = store.client.get_object(Bucket=store.location.bucket, Key=f"mail/raw/{key[:2]}/{key[2:4]}/{key}")
    assert stored["Body"].read() == data
    assert stored["ServerSideEncryption"] == "AES256"


def test_kms_encryption_names_its_key(s3_server):
    store = new_store(s3_server, server_side_encryption="aws:kms", kms_key_id="alias/mailroom-blobs")
    key = store.put(b"encrypted at rest")
    answer = store.client.head_object(Bucket=store.location.bucket, Key=store.object_key(key))
    assert answer["ServerSideEncryption"] == "aws:kms" and answer["SSEKMSKeyId"].endswith("alias/mailroom-blobs")


def test_a_missing_blob_and_what_is_no_key_are_not_found(s3_server):
    store = new_store(s3_server)
    absent = hashlib.sha256(b"never stored").hexdigest()
    for read in (store.get, lambda k: store.head(k, 100), store.stream):
        with pytest.raises(BlobNotFound):
            read(absent)
    assert store.exists(absent) is False
    # hostile keys never become object names (no other prefix, no other bucket's object)
    for hostile in ("../../etc/passwd", absent.upper(), absent[:-1], absent + "0", "", "a" * 64 + "/x"):
        with pytest.raises(BlobNotFound):
            store.get(hostile)
        assert store.exists(hostile) is False
    assert store.client.list_objects_v2(Bucket=store.location.bucket)["KeyCount"] == 0


def test_the_same_bytes_twice_are_one_object_written_once(s3_server):
    store = new_store(s3_server)
    store.client.put_bucket_versioning(Bucket=store.location.bucket, VersioningConfiguration={"Status": "Enabled"})
    first = store.put(b"duplicate mail")
    second = store.put(b"duplicate mail")
    assert first == second
    versions = store.client.list_object_versions(Bucket=store.location.bucket)["Versions"]
    assert len(versions) == 1  # the second put found it and sent nothing
    assert store.put(b"other mail") != first


def test_a_large_message_streams_in_bounded_chunks(s3_server):
    store = new_store(s3_server)
    data = hashlib.sha256(b"seed").digest() * (30 * 1024 * 1024 // 32)  # 30 MiB, over the 25 MB limit
    key = store.put(data)
    stream = store.stream(key)
    digest, chunks = hashlib.sha256(), 0
    for chunk in stream:
        assert len(chunk) <= STREAM_CHUNK_BYTES
        digest.update(chunk)
        chunks += 1
    stream.close()
    assert stream.size == len(data) and digest.hexdigest() == key and chunks > 1
    assert store.head(key, 4096) == data[:4096]


def test_an_unreachable_store_is_an_error_worth_retrying_not_a_missing_blob(s3_server):
    store = S3BlobStore(location(f"http://127.0.0.1:{free_port()}"))  # nothing listens there
    with pytest.raises(BlobStoreUnavailable) as failure:
        store.put(b"mail")
    assert isinstance(failure.value, OSError)  # handled as a failing disk is
    assert SECRET not in str(failure.value)
    with pytest.raises(BlobStoreUnavailable):
        store.get(hashlib.sha256(b"mail").hexdigest())
    # a bucket that does not exist: also no "not found" for the blob (the configuration is wrong)
    with pytest.raises(BlobStoreUnavailable):
        S3BlobStore(location(s3_server, bucket="no-such-bucket-here")).put(b"mail")


def test_open_blob_store_picks_the_store_by_location_and_reuses_it(s3_server, tmp_path):
    where = location(s3_server)
    assert isinstance(open_blob_store(where), S3BlobStore) and open_blob_store(where) is open_blob_store(where)
    assert isinstance(open_blob_store(tmp_path), DirectoryBlobStore)
    assert isinstance(open_blob_store(str(tmp_path)), DirectoryBlobStore)


def test_the_directory_store_streams_too(tmp_path):
    store = DirectoryBlobStore(tmp_path)
    data = b"x" * (STREAM_CHUNK_BYTES * 2 + 5)
    stream = store.stream(store.put(data))
    assert stream.size == len(data) and [len(c) for c in stream] == [STREAM_CHUNK_BYTES, STREAM_CHUNK_BYTES, 5]
    stream.close()
    with pytest.raises(BlobNotFound):
        store.stream(hashlib.sha256(b"absent").hexdigest())


# --- the whole path: SMTP listener → bucket → events → downloads -------------------------------

def s3_ingest(stack_factory, endpoint: str, bucket: str):
    store = new_store(endpoint, bucket=bucket, prefix="blobs/")  # the service's view of the bucket
    smtp_port = free_port()
    stack = stack_factory([INGEST], extra_env={
        "INGEST_SMTP_PORT": str(smtp_port), "INGEST_BLOB_STORE": "s3", "INGEST_S3_BUCKET": bucket,
        "INGEST_S3_PREFIX": "blobs", "INGEST_S3_ENDPOINT_URL": endpoint, "INGEST_S3_REGION": REGION,
        "INGEST_S3_ADDRESSING_STYLE": "path", "INGEST_S3_SSE": "AES256", **CREDENTIALS})
    stack.smtp_port = smtp_port
    stack.store = store
    publish_event(stack.amqp_uri, "inbox_updated", "inbox-1", {
        "inbox_id": "inbox-1", "name": "Support", "channel_addresses": [CHANNEL], "member_emails": []})
    stack.start_process("smtp", [sys.executable, "-m", "ingest.smtp_listener"], port=smtp_port)
    stack.eventually(lambda: rcpt_code(stack) == 250)
    return stack


def rcpt_code(stack) -> int:
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=10) as client:
        client.ehlo()
        client.mail("probe@example.com")
        return client.rcpt(CHANNEL)[0]


def customer_email(subject: str, attachment: bytes) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Ada Customer <ada@example.com>"
    message["To"] = CHANNEL
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4()}@example.com>"
    message.set_content("Hello, my order has not arrived.\n")
    message.add_attachment(attachment, maintype="application", subtype="pdf", filename="invoice.pdf")
    return message


def test_mail_taken_over_smtp_is_kept_in_the_bucket_and_downloaded_byte_for_byte(stack_factory, s3_server):
    stack = s3_ingest(stack_factory, s3_server, f"mailroom-{uuid.uuid4().hex[:12]}")
    pdf = b"%PDF-1.4 " + bytes(range(256)) * 40
    sent = customer_email("Order #42 missing", pdf).as_bytes(policy=email.policy.SMTP)
    with EventSubscriber(stack.amqp_uri, [("ingest.events", "#")]) as events:
        with smtplib.SMTP("127.0.0.1", stack.smtp_port) as client:
            assert client.sendmail("ada@example.com", [CHANNEL], sent) == {}
        [event] = events.wait_for("message_received")
    data = event["data"]
    assert data["subject"] == "Order #42 missing" and data["text"].startswith("Hello, my order")
    raw_key = hashlib.sha256(sent).hexdigest()
    bucket = stack.store.location.bucket
    stored = stack.store.client.get_object(Bucket=bucket, Key=f"blobs/{raw_key[:2]}/{raw_key[2:4]}/{raw_key}")
    assert stored["Body"].read() == sent and stored["ServerSideEncryption"] == "AES256"
    assert not list((stack.workdir / "var").rglob(raw_key))  # nothing on the pod's disk
    status, raw = stack.get(data["raw_url"])
    assert status == 200 and raw == sent  # byte for byte, streamed from the bucket
    [attachment] = data["attachments"]
    status, body = stack.get(attachment["url"])
    assert status == 200 and body == pdf
    # an attachment object lost from the bucket is extracted again from the raw message
    sha = attachment["sha256"]
    stack.store.client.delete_object(Bucket=bucket, Key=f"blobs/{sha[:2]}/{sha[2:4]}/{sha}")
    status, body = stack.get(attachment["url"])
    assert status == 200 and body == pdf
    assert stack.store.exists(sha)
    # the same mail again: no second object, no second message
    with smtplib.SMTP("127.0.0.1", stack.smtp_port) as client:
        client.sendmail("ada@example.com", [CHANNEL], sent)
    keys = [o["Key"] for o in stack.store.client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(keys) == sorted({f"blobs/{k[:2]}/{k[2:4]}/{k}" for k in (raw_key, sha)})
    for name in ("ingest", "smtp"):
        assert SECRET not in stack.log(name)


def test_the_smtp_listener_answers_a_temporary_failure_while_the_bucket_is_unreachable(stack_factory, s3_server):
    """250 only once the object store has the bytes: with the bucket gone the sender is told to
    retry (451) and keeps the message, instead of a 250 for mail that was never stored."""
    stack = s3_ingest(stack_factory, s3_server, f"mailroom-{uuid.uuid4().hex[:12]}")
    stack.store.client.delete_bucket(Bucket=stack.store.location.bucket)
    message = customer_email("Lost?", b"%PDF").as_bytes(policy=email.policy.SMTP)
    with smtplib.SMTP("127.0.0.1", stack.smtp_port) as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("ada@example.com", [CHANNEL], message)
    assert refused.value.smtp_code == 451
    # the bucket back: the sender's retry is taken and the message arrives, once
    stack.store.client.create_bucket(Bucket=stack.store.location.bucket,
                                     CreateBucketConfiguration={"LocationConstraint": REGION})
    with EventSubscriber(stack.amqp_uri, [("ingest.events", "message_received")]) as events:
        with smtplib.SMTP("127.0.0.1", stack.smtp_port) as client:
            assert client.sendmail("ada@example.com", [CHANNEL], message) == {}
        [event] = events.wait_for("message_received")
    assert event["data"]["subject"] == "Lost?"
    assert stack.get(event["data"]["raw_url"])[1] == message
    assert SECRET not in stack.log("smtp")


# --- moving a directory store into the bucket: `mailroom blobs migrate` -------------------------

def run_migrate(source, store: S3BlobStore, endpoint: str, *extra: str) -> subprocess.CompletedProcess:
    where = store.location
    env = {**os.environ, **CREDENTIALS, "INGEST_BLOB_STORE": "s3", "INGEST_S3_BUCKET": where.bucket,
           "INGEST_S3_PREFIX": where.prefix, "INGEST_S3_ENDPOINT_URL": endpoint, "INGEST_S3_REGION": REGION,
           "INGEST_S3_ADDRESSING_STYLE": "path"}
    return subprocess.run([sys.executable, "-m", "mailroom_cli.main", "blobs", "migrate", "--from", str(source),
                           *extra], capture_output=True, text=True, env=env, timeout=120)


def test_a_directory_store_moves_into_the_bucket_checked_and_only_once(s3_server, tmp_path):
    directory = DirectoryBlobStore(tmp_path / "blobs")
    blobs = [b"raw message %d\r\n" % n * (n + 1) for n in range(5)]
    keys = [directory.put(blob) for blob in blobs]
    (directory.root / keys[0][:2] / keys[0][2:4] / ".incoming-abc123").write_bytes(b"half a write")
    damaged = hashlib.sha256(b"what the name says").hexdigest()
    (directory.root / damaged[:2] / damaged[2:4]).mkdir(parents=True, exist_ok=True)
    (directory.root / damaged[:2] / damaged[2:4] / damaged).write_bytes(b"bit rot")
    (directory.root / "README").write_text("not a blob")
    store = new_store(s3_server, prefix="blobs/")

    dry = run_migrate(directory.root, store, s3_server, "--dry-run")
    assert "would copy 5 blobs" in dry.stdout and store.client.list_objects_v2(
        Bucket=store.location.bucket)["KeyCount"] == 0

    first = run_migrate(directory.root, store, s3_server)
    assert first.returncode == 1, first.stderr  # the damaged file is reported, so the run is not clean
    assert "copied 5 blobs" in first.stdout and "1 damaged" in first.stdout and "1 other files ignored" in first.stdout
    assert f"damaged (bytes do not match the name, not copied): {damaged}" in first.stdout
    for key, blob in zip(keys, blobs, strict=True):
        assert store.get(key) == blob
    assert not store.exists(damaged)
    listed = [o["Key"] for o in store.client.list_objects_v2(Bucket=store.location.bucket)["Contents"]]
    assert sorted(listed) == sorted(f"blobs/{k[:2]}/{k[2:4]}/{k}" for k in keys)  # no temp file, no stray

    (directory.root / damaged[:2] / damaged[2:4] / damaged).unlink()
    newer = directory.put(b"arrived while the first copy ran")
    again = run_migrate(directory.root, store, s3_server)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "copied 1 blobs" in again.stdout and "5 already there" in again.stdout
    assert store.get(newer) == b"arrived while the first copy ran"
    assert SECRET not in first.stdout + first.stderr + again.stdout + again.stderr


def test_migrate_refuses_a_source_that_is_no_directory_or_the_store_itself(s3_server, tmp_path):
    store = new_store(s3_server)
    assert run_migrate(tmp_path / "nowhere", store, s3_server).returncode == 2
    same = subprocess.run([sys.executable, "-m", "mailroom_cli.main", "blobs", "migrate", "--from", str(tmp_path)],
                          capture_output=True, text=True, timeout=120,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("INGEST_")},
                               "INGEST_BLOB_DIR": str(tmp_path)})
    assert same.returncode == 2 and "same directory" in same.stderr


# --- the bucket away while stored mail is analysed ---------------------------------------------

def test_mail_analysed_while_the_bucket_is_away_is_tried_again_not_quarantined(monkeypatch, tmp_path):
    """The raw message is in the bucket; then the store goes away (moto's server stopped: its
    objects stay in the process). Processing fails, the row stays `stored` with the reason and no
    event; once the store is back it is processed, its attachment stored and readable."""
    from sqlalchemy import select

    from ingest import handlers
    from ingest.analyser import InProcessAnalyser
    from ingest.models import Base, Intake, outbox
    from ingest.settings import Settings
    from mailroom_shared.db import Database
    from mailroom_shared.messaging.outbox import Outbox

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    database = Database(f"sqlite:///{tmp_path / 'ingest.db'}")
    try:
        Base.metadata.create_all(database.engine)
        with database.transaction() as session:
            handlers.replace_inbox(session, "inbox-1", [CHANNEL], [])
        store = new_store(f"http://127.0.0.1:{port}", prefix="blobs/")
        # a store of its own for the processing, opened after the outage (its first request fails)
        settings = Settings(blob_s3=S3Location(bucket=store.location.bucket, prefix="blobs/",
                                               endpoint_url=store.location.endpoint_url, region=REGION,
                                               addressing_style="path", server_side_encryption="AES256"))
        pdf = b"%PDF-1.4 " + bytes(range(256)) * 8
        raw = customer_email("While the bucket was away", pdf).as_bytes()
        [intake_id] = handlers.accept(database, store, raw, [CHANNEL], "http", settings).intake_ids
        server.stop()

        assert handlers.process_batch(database, Outbox(outbox), settings, InProcessAnalyser(), limit=4) == 1
        with database.transaction() as session:
            row = session.get(Intake, intake_id)
            assert (row.status, row.attempts) == ("stored", 1)
            assert "S3" in row.reason or "unreadable" in row.reason
            assert session.execute(select(outbox.c.event_type)).scalars().all() == []
            row.claimed_until = None  # the retry's pause has passed

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        assert handlers.process_batch(database, Outbox(outbox), settings, InProcessAnalyser(), limit=4) == 1
        with database.transaction() as session:
            assert session.get(Intake, intake_id).status == "processed"
            [data] = [row.envelope["data"] for row in session.execute(select(outbox.c.envelope))]
        assert data["subject"] == "While the bucket was away"
        [attachment] = data["attachments"]
        assert store.get(attachment["sha256"]) == pdf
    finally:
        database.dispose()
        server.stop()
