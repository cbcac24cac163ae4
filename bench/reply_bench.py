"""A reply's work in conversations and outbound, each in one process on a fresh PostgreSQL
database: no RabbitMQ, no nameko, no HTTP, no SMTP.

- conversations: `queries.reply_context_for`, the answer to outbound's reply-context request
  (one per reply), in its own transaction, for a member of the inbox; then the reply's
  `email_queued` and `email_sent` (`handlers.store_outbound_email`), each in its own transaction;
- outbound: `prepare_reply`, then `queue_email` (MIME built and checked) with the suppression
  check, then `claim_next` and `record_outcome` (sent), each in its own transaction as the
  service runs them.

Measured after a warm-up: Python CPU per operation (`time.process_time`, the best of `--repeats`
rounds, because this machine's speed drifts) and Python function calls per operation (cProfile's
count: the same on every run, so a change shows even when the CPU time is noisy). Nothing is
asserted. A/B against another checkout: `--services-dir /tmp/base/services`.

    .venv/bin/python bench/reply_bench.py [--rounds 200] [--repeats 7] [--services-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

CONVERSATION_ID = str(uuid.uuid4())
INBOX = "support@team.example"
MEMBER = {"user_id": "agent-1", "roles": [], "team_ids": ["team-1"], "email": "agent@team.example", "name": "Agent"}


def measure(operation, rounds: int, repeats: int) -> tuple[float, float]:
    """(best ms of CPU per operation, Python calls per operation)."""
    for _ in range(rounds // 2):
        operation()
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(rounds):
            operation()
        best = min(best, (time.process_time() - started) / rounds * 1000)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(rounds):
        operation()
    profile.disable()
    calls = sum(entry[1] for entry in pstats.Stats(profile).stats.values())
    return best, calls / rounds


def fresh_database(service: str, migrations: Path) -> str:
    from sqlalchemy import text

    from mailroom_shared.db import Database
    from mailroom_shared.migrations import upgrade

    name = f"reply_bench_{service}_{uuid.uuid4().hex[:8]}"
    admin = Database(ADMIN_URL)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(service, migrations, url)
    return url


def drop_database(url: str) -> None:
    from sqlalchemy import text

    from mailroom_shared.db import Database

    admin = Database(ADMIN_URL)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


@contextlib.contextmanager
def conversations_database(services: Path):
    """(database, outbox, conversation id): a fresh conversations database with an inbox, its
    member and a customer's conversation."""
    from conversations import handlers
    from conversations.service import ConversationsService
    from conversations.settings import Settings
    from mailroom_shared.db import Database

    url = fresh_database("conversations", services / "conversations" / "conversations" / "migrations")
    database = Database(url)
    try:
        outbox = ConversationsService.outbox
        with database.transaction() as session:
            handlers.create_inbox(session, outbox, {"name": "Support", "channels": [{"address": INBOX}],
                                                    "members": [{"user_id": MEMBER["user_id"],
                                                                 "email": MEMBER["email"]}]})
        customer = {"email": "ada@example.com", "name": "Ada"}
        with database.transaction() as session:
            conversation_id = handlers.receive_message(session, outbox, {
                "intake_id": "intake-1", "message_id": "first@example.com", "channel_address": INBOX,
                "subject": "My order", "sender": customer, "attributed_to": customer, "to": [{"email": INBOX}],
                "cc": [], "reply_to": [], "in_reply_to": [], "references": [], "text": "Where is it?", "html": None,
                "attachments": [], "received_at": "2026-12-01T10:00:00+00:00", "via": "smtp", "size": 100,
                "flags": {"spam": False, "loop": False, "auto_submitted": False, "bounce": False}},
                Settings()).conversation.id
        yield database, outbox, conversation_id
    finally:
        database.dispose()
        drop_database(url)


def reply_context(services: Path, rounds: int, repeats: int) -> tuple[float, float]:
    from conversations import queries

    with conversations_database(services) as (database, _outbox, conversation_id):
        def operation():
            with database.transaction() as session:
                context = queries.reply_context_for(session, conversation_id, None, False, MEMBER)
            assert context["message"]["rfc_message_id"]

        return measure(operation, rounds, repeats)


def our_email_stored(services: Path, rounds: int, repeats: int) -> tuple[float, float]:
    """outbound's email_queued, then its email_sent, as conversations' handlers take them (each in
    its own transaction): the reply stored in its conversation, then its delivery state."""
    from conversations import handlers

    with conversations_database(services) as (database, outbox, conversation_id):
        def operation():
            email_id = str(uuid.uuid4())
            data = {"email_id": email_id, "inbox_id": None, "conversation_id": conversation_id,
                    "rfc_message_id": f"<{email_id}@team.example>", "from_": {"email": INBOX, "name": "Support"},
                    "to": [{"email": "ada@example.com", "name": "Ada"}], "cc": [], "subject": "Re: My order",
                    "text": "It left the warehouse today.", "html": None, "attachments": [],
                    "in_reply_to": ["first@example.com"], "references": ["first@example.com"],
                    "queued_at": "2026-12-01T11:00:00+00:00"}
            with database.transaction() as session:
                handlers.store_outbound_email(session, outbox, data, "queued", {})
            with database.transaction() as session:
                handlers.store_outbound_email(session, outbox, data, "sent", {
                    "smtp_queue_id": "Q1", "at": "2026-12-01T11:00:01+00:00", "attempts": 1})

        return measure(operation, rounds, repeats)


def outbound_reply(services: Path, rounds: int, repeats: int) -> tuple[float, float]:
    from mailroom_shared.db import Database
    from outbound import handlers, queries, suppressions
    from outbound.domain.delivery import Outcome
    from outbound.service import OutboundService
    from outbound.settings import Settings

    url = fresh_database("outbound", services / "outbound" / "outbound" / "migrations")
    database = Database(url)
    try:
        outbox, settings = OutboundService.outbox, Settings()
        customer = {"email": "ada@example.com", "name": "Ada"}
        # what conversations answers for a reply (reply_context_for)
        context = {
            "conversation": {"id": CONVERSATION_ID, "inbox_id": "inbox-1", "subject": "My order", "status": "open",
                             "reply_token": "0123456789abcdef0123456789abcdef",
                             "created_at": "2026-12-01T10:00:00+00:00", "contact": customer},
            "inbox": {"inbox_id": "inbox-1", "name": "Support", "primary_address": INBOX,
                      "identities": [{"email": INBOX, "name": "Support", "primary": True}]},
            "message": {"id": "message-1", "direction": "in", "rfc_message_id": "first@example.com",
                        "subject": "My order", "sender": customer, "attributed_to": customer, "forward": None,
                        "to": [{"email": INBOX}], "cc": [{"email": "bo@example.com", "name": "Bo"}], "reply_to": [],
                        "in_reply_to": [], "references": [], "text": "Where is it?", "html": None, "flags": {}},
            "channel_address": INBOX}
        request = {"text": "Hello Ada,\n\nIt left our warehouse this morning. " * 8, "reply_all": True}
        sent = Outcome("sent", 250, "250 2.0.0 Ok: queued as 4F2A1", "4F2A1")

        def operation():
            prepared = handlers.prepare_reply(context, request, settings)
            with database.transaction() as session:
                suppressions.refuse_suppressed(session, prepared)
                email = handlers.queue_email(session, outbox, prepared, settings, str(uuid.uuid4()), "digest")
                queries.email_view(session, email, attempts=[])
            with database.transaction() as session:
                claimed = handlers.claim_next(session, outbox, settings)
            with database.transaction() as session:
                handlers.record_outcome(session, outbox, claimed, sent, settings)

        return measure(operation, rounds, repeats)
    finally:
        database.dispose()
        drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--services-dir", type=Path, default=ROOT / "services",
                        help="whose conversations and outbound code to run (another checkout's, for an A/B)")
    args = parser.parse_args()
    services = args.services_dir.resolve()
    sys.path[:0] = [str(services / "conversations"), str(services / "outbound")]
    print(f"services from {services}")
    for label, run in (("conversations reply_context_for", reply_context),
                       ("conversations email_queued + email_sent", our_email_stored),
                       ("outbound prepare + queue + claim + record_outcome", outbound_reply)):
        cpu, calls = run(services, args.rounds, args.repeats)
        print(f"  {label:52} {cpu:6.2f} ms Python CPU (best of {args.repeats})  {calls:8,.0f} Python calls")


if __name__ == "__main__":
    main()
