"""BlobStore.delete on the S3 store (issue #17: a contact's raw mail erased) against moto's server
mode, a real HTTP endpoint the SDK talks to as to S3 or MinIO."""

from __future__ import annotations

import uuid

import pytest
from moto.server import ThreadedMotoServer

from ingest.blobstore import BlobNotFound, BlobStoreUnavailable, S3Location
from ingest.s3_blobstore import S3BlobStore
from mailroom_testing.stack import free_port

pytestmark = pytest.mark.integration

REGION = "eu-west-1"


@pytest.fixture
def store(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "mailroom-test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "mailroom-test-secret")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    location = S3Location(bucket=f"mailroom-{uuid.uuid4().hex[:12]}", endpoint_url=f"http://{host}:{port}",
                          region=REGION, addressing_style="path", prefix="mail/")
    blobs = S3BlobStore(location)
    blobs.client.create_bucket(Bucket=location.bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    yield blobs
    server.stop()


def test_a_deleted_blob_is_gone_and_deleting_again_is_no_error(store):
    key = store.put(b"From: ada@example.com\r\n\r\nsecret")
    other = store.put(b"From: bob@example.com\r\n\r\nbob")
    assert store.delete(key) is True
    assert not store.exists(key)
    with pytest.raises(BlobNotFound):
        store.get(key)
    assert store.delete(key) is False  # a redelivered erasure
    assert store.get(other).endswith(b"bob")  # only that object
    assert store.delete("../../etc/passwd") is False  # no key: never an object of its own


def test_an_unreachable_store_fails_the_erasure_to_be_retried(store):
    key = store.put(b"bytes")
    broken = S3BlobStore(S3Location(bucket=store.location.bucket, endpoint_url=f"http://127.0.0.1:{free_port()}",
                                    region=REGION, addressing_style="path", prefix="mail/"))
    with pytest.raises(BlobStoreUnavailable):
        broken.delete(key)
    assert store.exists(key)
