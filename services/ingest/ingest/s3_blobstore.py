"""The blob store in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, …): INGEST_BLOB_STORE=s3.

The same contract as the directory store (ingest.blobstore): content-addressed keys under
`<prefix>ab/cd/abcd…`, `put` idempotent (an object already there is not sent again) and durable
when it returns — S3 acknowledges a PUT only once the object is stored, and the body is checked
against its sha256 by the store (`ChecksumSHA256`), so a corrupted upload is refused, never kept.
Credentials come from the AWS SDK's chain (environment, web identity, instance role): none is
passed, kept or logged here.
"""

from __future__ import annotations

import base64
import hashlib

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ingest.blobstore import STREAM_CHUNK_BYTES, BlobNotFound, BlobStoreUnavailable, BlobStream, S3Location, object_path

_MISSING = {"404", "NoSuchKey", "NotFound"}


def s3_client(location: S3Location):
    config = Config(
        s3={"addressing_style": location.addressing_style},
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5, read_timeout=60,
        # checksums only where we send one (ChecksumSHA256 on PUT): some S3-compatible stores
        # refuse the SDK's default extra CRC32 trailer
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
    )
    return boto3.session.Session().client("s3", endpoint_url=location.endpoint_url, region_name=location.region,
                                          config=config)


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


class S3BlobStore:
    def __init__(self, location: S3Location, client=None):
        self.location = location
        self.client = client if client is not None else s3_client(location)
        self._encryption = {}
        if location.server_side_encryption:
            self._encryption["ServerSideEncryption"] = location.server_side_encryption
            if location.kms_key_id:
                self._encryption["SSEKMSKeyId"] = location.kms_key_id

    def object_key(self, key: str) -> str:
        return self.location.prefix + object_path(key)

    def _unavailable(self, action: str, key: str, exc: Exception) -> BlobStoreUnavailable:
        # the bucket and key only: botocore's messages carry no credentials
        return BlobStoreUnavailable(f"S3 {action} of s3://{self.location.bucket}/{self.object_key(key)} failed: {exc}")

    def put(self, data: bytes, *, durable: bool = True) -> str:
        """Store `data` under its sha256 (`durable` is the directory store's: S3 always is)."""
        digest = hashlib.sha256(data).digest()
        key = digest.hex()
        if self.exists(key):
            return key
        try:
            self.client.put_object(Bucket=self.location.bucket, Key=self.object_key(key), Body=data,
                                   ContentType="application/octet-stream",
                                   ChecksumSHA256=base64.b64encode(digest).decode(), **self._encryption)
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable("PUT", key, exc) from exc
        return key

    def _get_object(self, key: str, **kwargs) -> dict:
        object_key = self.object_key(key)  # BlobNotFound for what is no key, before any request
        try:
            return self.client.get_object(Bucket=self.location.bucket, Key=object_key, **kwargs)
        except ClientError as exc:
            if _missing(exc):
                raise BlobNotFound(key) from exc
            if kwargs.get("Range") and exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return {"Body": None, "ContentLength": 0}  # an empty object has no first byte
            raise self._unavailable("GET", key, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("GET", key, exc) from exc

    def get(self, key: str) -> bytes:
        answer = self._get_object(key)
        try:
            return answer["Body"].read()
        except BotoCoreError as exc:
            raise self._unavailable("GET", key, exc) from exc
        finally:
            answer["Body"].close()

    def head(self, key: str, size: int) -> bytes:
        """The first `size` bytes (a ranged GET: a 25 MB message is not downloaded for its headers)."""
        if size <= 0:
            return b""
        answer = self._get_object(key, Range=f"bytes=0-{size - 1}")
        if answer["Body"] is None:
            return b""
        try:
            return answer["Body"].read()[:size]
        finally:
            answer["Body"].close()

    def exists(self, key: str) -> bool:
        try:
            object_key = self.object_key(key)
        except BlobNotFound:
            return False
        try:
            self.client.head_object(Bucket=self.location.bucket, Key=object_key)
        except ClientError as exc:
            if _missing(exc):
                return False
            raise self._unavailable("HEAD", key, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("HEAD", key, exc) from exc
        return True

    def delete(self, key: str) -> bool:
        """Erasure: S3 answers 204 whether or not the object was there, so ask first (a redelivered
        erasure deletes again)."""
        if not self.exists(key):
            return False
        try:
            self.client.delete_object(Bucket=self.location.bucket, Key=self.object_key(key))
        except (ClientError, BotoCoreError) as exc:
            raise self._unavailable("DELETE", key, exc) from exc
        return True

    def stream(self, key: str) -> BlobStream:
        answer = self._get_object(key)
        body = answer["Body"]
        return BlobStream(body.iter_chunks(STREAM_CHUNK_BYTES), int(answer["ContentLength"]), body.close)
