"""Raw message and attachment storage: a directory by default (S3-compatible later).

Content-addressed (sha256), so storing the same bytes twice is free and a key never changes.
`put` returns only after the bytes are on disk (fsync of file and directory): SMTP answers 250
after that.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class BlobNotFound(KeyError):
    pass


class DirectoryBlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise BlobNotFound(key)  # never let a key walk the filesystem
        return self.root / key[:2] / key[2:4] / key

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
