"""INGEST_BLOB_STORE and INGEST_S3_*: which blob store the settings name, and the mistakes an
operator can make refused at start with the variable named (never a pod that stores mail nowhere)."""

import os
from pathlib import Path

import pytest

from ingest.blobstore import S3Location, normalise_prefix
from ingest.settings import Settings, load
from mailroom_shared.config import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MAILROOM_VAR_DIR", str(tmp_path / "var"))


def test_the_directory_store_is_the_default(tmp_path):
    settings = load()
    assert settings.blob_s3 is None
    assert settings.blob_location == (tmp_path / "var" / "blobs").resolve()
    assert Settings(blob_dir=Path("/data/blobs")).blob_location == Path("/data/blobs")


def test_the_s3_store_is_read_from_the_environment(monkeypatch):
    for name, value in {"INGEST_BLOB_STORE": "S3", "INGEST_S3_BUCKET": "acme-mail", "INGEST_S3_PREFIX": "/prod/raw",
                        "INGEST_S3_ENDPOINT_URL": "https://minio.storage.svc:9000", "INGEST_S3_REGION": "eu-west-3",
                        "INGEST_S3_ADDRESSING_STYLE": "path", "INGEST_S3_SSE": "aws:kms",
                        "INGEST_S3_SSE_KMS_KEY_ID": "arn:aws:kms:eu-west-3:111122223333:key/abcd"}.items():
        monkeypatch.setenv(name, value)
    settings = load()
    assert settings.blob_location == settings.blob_s3 == S3Location(
        bucket="acme-mail", prefix="prod/raw/", endpoint_url="https://minio.storage.svc:9000", region="eu-west-3",
        addressing_style="path", server_side_encryption="aws:kms",
        kms_key_id="arn:aws:kms:eu-west-3:111122223333:key/abcd")


def test_aes256_and_no_encryption(monkeypatch):
    monkeypatch.setenv("INGEST_BLOB_STORE", "s3")
    monkeypatch.setenv("INGEST_S3_BUCKET", "acme-mail")
    assert load().blob_s3 == S3Location(bucket="acme-mail")
    monkeypatch.setenv("INGEST_S3_SSE", "aes256")
    assert load().blob_s3.server_side_encryption == "AES256"


def test_no_credentials_are_part_of_the_settings(monkeypatch):
    """The SDK finds them itself: they never travel in the settings (or a job sent to a parser
    process), so nothing that prints a Settings or an S3Location can print them."""
    monkeypatch.setenv("INGEST_BLOB_STORE", "s3")
    monkeypatch.setenv("INGEST_S3_BUCKET", "acme-mail")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    text = repr(load())
    assert "very-secret-value" not in text and "AKIAEXAMPLEKEY" not in text


@pytest.mark.parametrize(("environment", "message"), [
    ({"INGEST_BLOB_STORE": "nfs"}, "INGEST_BLOB_STORE must be one of directory, s3, not 'nfs'"),
    ({"INGEST_BLOB_STORE": "s3"}, "INGEST_BLOB_STORE=s3 needs INGEST_S3_BUCKET"),
    ({"INGEST_BLOB_STORE": "s3", "INGEST_S3_BUCKET": "b-1", "INGEST_S3_SSE": "des"}, "INGEST_S3_SSE must be one of"),
    ({"INGEST_BLOB_STORE": "s3", "INGEST_S3_BUCKET": "b-1", "INGEST_S3_SSE_KMS_KEY_ID": "k"},
     "INGEST_S3_SSE_KMS_KEY_ID goes with INGEST_S3_SSE=aws:kms"),
    ({"INGEST_BLOB_STORE": "s3", "INGEST_S3_BUCKET": "b-1", "INGEST_S3_ADDRESSING_STYLE": "dns"},
     "INGEST_S3_ADDRESSING_STYLE must be one of auto, path, virtual"),
])
def test_a_bad_blob_store_setting_stops_the_start_naming_its_variable(monkeypatch, environment, message):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("=", "=")):
        load()


def test_prefixes_are_normalised():
    assert [normalise_prefix(p) for p in (None, "", "/", "raw", "/raw/", "a/b")] == ["", "", "", "raw/", "raw/", "a/b/"]


@pytest.mark.parametrize("options", [{"bucket": ""}, {"bucket": "b-1", "server_side_encryption": "des"},
                                     {"bucket": "b-1", "kms_key_id": "k"}])
def test_an_inconsistent_location_is_refused(options):
    with pytest.raises(ValueError):
        S3Location(**options)


def test_a_store_that_fails_while_a_message_is_analysed_means_try_again_not_quarantine():
    """An attachment's PUT refused by the object store (a network blip, a throttled request) is
    no fault of the message: it is analysed again later, like raw bytes that could not be read."""
    from ingest.analyser import QUARANTINE, RETRY, verdict
    from ingest.worker_pool import Outcome

    failed_put = Outcome(ok=False, kind="raised", error_type="BlobStoreUnavailable",
                         error="S3 PUT of s3://b/blobs/ab/cd/… failed: Connection reset")
    assert verdict(failed_put) == (RETRY, failed_put.error)
    unreadable = Outcome(ok=False, kind="raised", error_type="StoredMessageMissing", error="raw message gone")
    assert verdict(unreadable)[0] == RETRY
    broken = Outcome(ok=False, kind="raised", error_type="ValueError", error="bad")
    assert verdict(broken)[0] == QUARANTINE
