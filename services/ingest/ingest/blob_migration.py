"""Copy a directory blob store into another store (the S3 bucket): `mailroom blobs migrate`.

Both stores lay keys out as `ab/cd/<sha256>`, so this is a copy of the tree; what it adds over
`aws s3 sync` is that every file is read back and its sha256 checked against its name before it
is sent (a damaged file is reported, never copied under a name it does not match), temporary
files of an interrupted write (`.incoming-*`) are left out, and the target's own idempotent `put`
is used (a blob already there is not sent again), so the command can be run again until it
reports nothing left to copy — e.g. once before switching INGEST_BLOB_STORE and once after,
for what arrived in between.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.blobstore import BlobStore

KEY_PATH = re.compile(r"^([0-9a-f]{2})/([0-9a-f]{2})/(\1\2[0-9a-f]{60})$")


@dataclass
class MigrationReport:
    copied: int = 0
    already_there: int = 0
    copied_bytes: int = 0
    damaged: list[str] = field(default_factory=list)  # files whose bytes do not match their name
    failed: list[str] = field(default_factory=list)  # "<key>: <error>" the target refused
    ignored: list[str] = field(default_factory=list)  # files that are no blob (not ab/cd/<sha256>)

    @property
    def ok(self) -> bool:
        return not (self.damaged or self.failed)


def blob_files(root: Path):
    """(key, path) of every blob under `root`, in key order; other files as (None, path)."""
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        match = KEY_PATH.match(relative)
        yield (match.group(3) if match else None), path


def migrate(root: Path, target: BlobStore, *, dry_run: bool = False,
            progress: Callable[[str, str], None] | None = None) -> MigrationReport:
    report = MigrationReport()
    for key, path in blob_files(root):
        if key is None:
            if not path.name.startswith(".incoming-"):  # an interrupted write: never a blob
                report.ignored.append(str(path))
            continue
        try:
            if target.exists(key):
                report.already_there += 1
                continue
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != key:
                report.damaged.append(key)
                continue
            if not dry_run and target.put(data) != key:  # content-addressed: the same bytes, the same key
                raise OSError(f"the target stored {key} under another key")
            report.copied += 1
            report.copied_bytes += len(data)
            if progress:
                progress("copied" if not dry_run else "would copy", key)
        except OSError as exc:
            report.failed.append(f"{key}: {exc}")
    return report
