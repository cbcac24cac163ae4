"""Raw message and attachment storage: a directory (the default, `make run`) or an S3-compatible
object store (INGEST_BLOB_STORE=s3, the production overlay; ingest.s3_blobstore).

Content-addressed (sha256), so storing the same bytes twice is free and a key never changes.
`put` returns only once the bytes are durable — fsync of file and directory here, the object
store's acknowledgement there: the SMTP listener answers 250 after that. Both stores lay the keys
out the same way (`ab/cd/abcd…`), so a directory tree copied into a bucket under the prefix is a
working S3 store (docs/operations.md, "Moving blobs to S3").
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

STREAM_CHUNK_BYTES = 64 * 1024


class BlobNotFound(KeyError):
    pass


class BlobStoreUnavailable(OSError):
    """The store could not be reached or refused the request (not a missing key): worth a retry.
    An OSError, as a failing disk is, so callers handle both stores the same way."""


def object_path(key: str) -> str:
    """`ab/cd/abcd…`: where a key lives under the store's root (or the bucket's prefix). Anything
    but a sha256 in lower-case hex is no key: it never names a path or an object of its own."""
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise BlobNotFound(key)
    return f"{key[:2]}/{key[2:4]}/{key}"


class BlobStream:
    """A stored blob read in chunks (the raw .eml download) without holding it whole; `size` in
    bytes; close it (a WSGI server closes the response's iterable)."""

    def __init__(self, chunks: Iterator[bytes], size: int, close=None):
        self._chunks = chunks
        self.size = size
        self._close = close

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None


class BlobStore(Protocol):
    def put(self, data: bytes, *, durable: bool = True) -> str: ...
    def get(self, key: str) -> bytes: ...
    def head(self, key: str, size: int) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def stream(self, key: str) -> BlobStream: ...
    def delete(self, key: str) -> bool: ...


class DirectoryBlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / object_path(key)  # never let a key walk the filesystem

    def put(self, data: bytes, *, durable: bool = True) -> str:
        """Store `data` under its sha256. `durable=False` skips the fsyncs: for bytes that can be
        derived again from a durable blob (attachments are re-extracted from the raw message)."""
        key = hashlib.sha256(data).hexdigest()
        path = self._path(key)
        if path.exists():
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if not durable:
            return key
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return key

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc

    def head(self, key: str, size: int) -> bytes:
        """The first `size` bytes (a header block), without reading a 25 MB message whole."""
        try:
            with self._path(key).open("rb") as handle:
                return handle.read(size)
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).exists()
        except BlobNotFound:
            return False

    def stream(self, key: str) -> BlobStream:
        try:
            handle = self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
        size = os.fstat(handle.fileno()).st_size
        return BlobStream(iter(lambda: handle.read(STREAM_CHUNK_BYTES), b""), size, handle.close)

    def delete(self, key: str) -> bool:
        """Erasure (a contact erased on request): True if it was there. Missing is not an error (a
        redelivered erasure deletes again)."""
        try:
            self._path(key).unlink()
        except (FileNotFoundError, BlobNotFound):
            return False
        return True


SERVER_SIDE_ENCRYPTION = ("AES256", "aws:kms")


@dataclass(frozen=True)
class S3Location:
    """Where the S3 store keeps blobs (INGEST_S3_*). No credentials here: the AWS SDK's own chain
    finds them (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from a Secret, a web identity token, an
    instance role), so they are never in the settings, a job sent to a parser process or a log."""

    bucket: str
    prefix: str = ""  # "" or ending in "/"
    endpoint_url: str | None = None  # MinIO, Ceph, … (None: AWS)
    region: str | None = None
    addressing_style: str = "auto"  # path: https://host/bucket/key (most S3-compatible stores)
    server_side_encryption: str | None = None  # AES256 | aws:kms
    kms_key_id: str | None = None  # with aws:kms: the key (else the bucket's default KMS key)

    def __post_init__(self):
        if not self.bucket:
            raise ValueError("an S3 blob store needs a bucket")
        if self.server_side_encryption not in (None, *SERVER_SIDE_ENCRYPTION):
            raise ValueError(f"server-side encryption is one of {SERVER_SIDE_ENCRYPTION}")
        if self.kms_key_id and self.server_side_encryption != "aws:kms":
            raise ValueError("a KMS key id goes with server-side encryption aws:kms")


def normalise_prefix(prefix: str | None) -> str:
    """`mail/raw` → `mail/raw/`; no leading slash; "" for the bucket's root."""
    prefix = (prefix or "").strip().strip("/")
    return f"{prefix}/" if prefix else ""


_opened: dict[tuple[int, Path | S3Location], BlobStore] = {}


def open_blob_store(where: Path | str | S3Location) -> BlobStore:
    """The store at `where` (a directory, or an S3Location), one per process and location: a
    parser process reuses its S3 client (and its connections) across jobs; a forked child makes
    its own rather than share the parent's sockets."""
    location = where if isinstance(where, S3Location) else Path(where)
    cache_key = (os.getpid(), location)
    store = _opened.get(cache_key)
    if store is None:
        if isinstance(location, S3Location):
            from ingest.s3_blobstore import S3BlobStore  # boto3 only where S3 is used

            store = S3BlobStore(location)
        else:
            store = DirectoryBlobStore(location)
        _opened[cache_key] = store
    return store
