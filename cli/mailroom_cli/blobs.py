"""`mailroom blobs migrate --from DIR`: copy a directory blob store (INGEST_BLOB_DIR) into the
store the settings name now (INGEST_BLOB_STORE=s3 and INGEST_S3_*), checking every blob against
its sha256 on the way; run again until nothing is left to copy (docs/operations.md, "Moving blobs
to S3")."""

from __future__ import annotations

import sys
from pathlib import Path


def add_commands(commands) -> None:
    parser = commands.add_parser("blobs", help="the blob store: copy a directory store into the configured one")
    actions = parser.add_subparsers(dest="action", required=True)
    migrate = actions.add_parser("migrate", help="copy every blob of a directory store into the configured store")
    migrate.add_argument("--from", dest="source", required=True, help="the directory store (the old INGEST_BLOB_DIR)")
    migrate.add_argument("--dry-run", action="store_true", help="count what would be copied, send nothing")
    migrate.add_argument("--verbose", action="store_true", help="print each key copied")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ingest import settings as ingest_settings
    from ingest.blob_migration import migrate
    from ingest.blobstore import open_blob_store

    source = Path(args.source)
    if not source.is_dir():
        print(f"mailroom blobs migrate: {source} is not a directory", file=sys.stderr)
        return 2
    settings = ingest_settings.load(mailboxes=False)
    if settings.blob_s3 is None and Path(settings.blob_dir).resolve() == source.resolve():
        print("mailroom blobs migrate: the configured store is that same directory; set INGEST_BLOB_STORE=s3 "
              "and INGEST_S3_* first", file=sys.stderr)
        return 2
    target = open_blob_store(settings.blob_location)
    report = migrate(source, target, dry_run=args.dry_run,
                     progress=(lambda what, key: print(f"{what} {key}")) if args.verbose else None)
    verb = "would copy" if args.dry_run else "copied"
    print(f"{verb} {report.copied} blobs ({report.copied_bytes} bytes); {report.already_there} already there; "
          f"{len(report.damaged)} damaged; {len(report.failed)} failed; {len(report.ignored)} other files ignored")
    for key in report.damaged:
        print(f"damaged (bytes do not match the name, not copied): {key}")
    for failure in report.failed:
        print(f"failed: {failure}")
    return 0 if report.ok else 1
