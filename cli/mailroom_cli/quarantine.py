"""`mailroom quarantine list | retry`: messages ingest stored but could not process (they show in
their inbox as placeholders). After an upgrade that can process them, `retry` runs them again; what
goes through fills in the placeholder. Works on ingest's database (INGEST_DATABASE_URL), like
`mailroom migrate`; the HTTP API offers the same (`/api/ingest/quarantine`)."""

from __future__ import annotations

import json


def add_commands(commands) -> None:
    parser = commands.add_parser("quarantine", help="list quarantined messages or run them again")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="newest first, with the reason")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    retry = actions.add_parser("retry", help="run quarantined messages again (after an upgrade)")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="intake_ids", action="append", help="an intake id (repeatable)")
    which.add_argument("--all", action="store_true", help="every quarantined message")
    retry.add_argument("--reason-contains", help="with --all: only those whose reason contains this")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ingest import handlers, queries
    from mailroom_shared import config
    from mailroom_shared.db import Database

    database = Database(config.database_url("ingest"))
    try:
        if args.action == "list":
            with database.transaction() as session:
                page = queries.quarantined_page(session, None, args.limit)
            if args.json:
                print(json.dumps(page["items"], indent=2, default=str))
            elif not page["items"]:
                print("nothing is quarantined")
            for item in [] if args.json else page["items"]:
                print(f"{item['id']}  {item['received_at']:%Y-%m-%d %H:%M}  {item['channel_address']}  "
                      f"{item['size']} bytes  attempts={item['attempts']}\n  {item['reason']}")
            return 0
        with database.transaction() as session:
            taken = handlers.retry_quarantined(session, None if args.all else args.intake_ids,
                                               args.reason_contains if args.all else None)
        print(f"{len(taken)} message(s) taken back for processing" + (f": {', '.join(taken)}" if taken else ""))
        return 0 if taken or args.all else 1
    finally:
        database.dispose()
