"""The conversations service's inbound handler alone, in one process: CPU and SQL statements per
`message_received`, without RabbitMQ, nameko or the other services.

Real events: the corpus (bench/corpus.py) analysed by ingest's own `analyse_stored` into
`message_received` envelopes (cached under /tmp between runs), then handled by conversations'
`receive_message` and `settle_contacts` (as its message_received handler runs them) on a fresh,
migrated PostgreSQL database, `--batch` events per transaction with the processed-events claim (as
the kit's group commit runs them); then a contact_created for each sender (`learn_contact`).
Measured over the events after a warm-up: this process's CPU time (`time.process_time`), the PostgreSQL backend's CPU
(`/proc/<pid>/stat`, one connection), and statements and transactions per event. CPU time, not
wall time: a loaded machine changes it far less than it changes rates. Nothing is asserted.

    .venv/bin/python bench/handler_bench.py [--n 600] [--batch 8] [--search-index on|off]
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from corpus import INBOX_ADDRESS, MEMBER, generate  # noqa: E402
from sqlalchemy import event, text  # noqa: E402

from mailroom_shared.db import Database  # noqa: E402
from mailroom_shared.events.envelope import parse_envelope  # noqa: E402
from mailroom_shared.migrations import upgrade  # noqa: E402
from mailroom_testing.specs import CONVERSATIONS  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def envelopes(n: int) -> list[dict]:
    cache = Path(tempfile.gettempdir()) / f"mailroom-handler-bench-{n}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    from ingest.analyser import AnalysisJob, analyse_stored
    from ingest.blobstore import DirectoryBlobStore
    from ingest.domain.analysis import AnalysisSettings

    result = []
    with tempfile.TemporaryDirectory() as blob_dir:
        blobs = DirectoryBlobStore(Path(blob_dir))
        settings = AnalysisSettings(own_addresses=frozenset({INBOX_ADDRESS}))
        for index, message in enumerate(generate(n)):
            raw = message.raw
            received_at = f"2026-12-01T09:{index // 60 % 60:02d}:{index % 60:02d}+00:00"
            job = AnalysisJob(intake_id=f"intake-{index}", channel_address=INBOX_ADDRESS, via="smtp",
                              reply_token=None, size=len(raw), received_at=received_at,
                              blob_dir=blob_dir,
                              blob_key=blobs.put(raw), analysis=settings, trusted_senders=frozenset({MEMBER[1]}))
            result.append(analyse_stored(job)["envelope"])
    cache.write_text(json.dumps(result))
    return result


def backend_cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8, help="events per transaction (the kit's group commit)")
    parser.add_argument("--drop-index", action="append", default=[], help="an index to drop first (to price it)")
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of the measured part")
    args = parser.parse_args()

    from conversations import contact_corrections, handlers
    from conversations.service import ConversationsService
    from conversations.settings import Settings

    outbox, processed_events = ConversationsService.outbox, ConversationsService.processed

    events = envelopes(args.n)
    name = f"handler_bench_{uuid.uuid4().hex[:8]}"
    admin = Database(ADMIN_URL)
    with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(CONVERSATIONS.name, CONVERSATIONS.migrations, url)
        database = Database(url)
        with database.transaction() as session:
            for index in args.drop_index:
                session.execute(text(f'DROP INDEX "{index}"'))
        database.engine.pool.dispose()
        statements = {"n": 0}
        def count(*_):
            statements["n"] += 1
        event.listen(database.engine, "before_cursor_execute", count)
        per_statement: dict[str, list[float]] = {}
        if os.environ.get("BENCH_STATEMENT_TIMES"):
            def before(conn, cursor, statement, params, context, many):
                conn.info["started"] = time.perf_counter()

            def after(conn, cursor, statement, params, context, many):
                key = " ".join(statement.split())[:int(os.environ.get("BENCH_STATEMENT_CHARS", "90"))]
                per_statement.setdefault(key, []).append(time.perf_counter() - conn.info["started"])
            event.listen(database.engine, "before_cursor_execute", before)
            event.listen(database.engine, "after_cursor_execute", after)
        with database.transaction() as session:
            handlers.seed_inboxes(session, outbox, [{
                "key": "support", "name": "Support",
                "channels": [{"address": INBOX_ADDRESS, "name": "Support", "primary": True}],
                "members": [{"user_id": "agent-1", "email": MEMBER[1]}]}])
        settings = Settings()
        with database.transaction() as session:
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar()

        # as the service's message_received handler: the message, then its contacts settled
        takes_turn = "turn_taken" in inspect.signature(contact_corrections.settle_contacts).parameters
        settle = functools.partial(contact_corrections.settle_contacts, turn_taken=True) if takes_turn else \
            contact_corrections.settle_contacts

        def run(batch: list[dict]) -> None:
            with database.transaction() as session:
                claimed = processed_events.claim_many(session, [(e, "handle_message_received") for e in batch])
                for envelope, mine in zip(batch, claimed, strict=True):
                    if mine:
                        data = parse_envelope(envelope, "message_received")
                        handlers.receive_message(session, outbox, data, settings)
                        settle(session, data)

        def chunks(items):
            for start in range(0, len(items), args.batch):
                yield items[start:start + args.batch]

        for batch in chunks(events[:args.warmup]):
            run(batch)
        measured = events[args.warmup:]
        profiler = None
        if args.profile:
            import cProfile
            profiler = cProfile.Profile(time.process_time)
        statements["n"] = 0
        cpu0, pg0, wall0 = time.process_time(), backend_cpu_ms(pid), time.perf_counter()
        if profiler:
            profiler.enable()
        for batch in chunks(measured):
            run(batch)
        if profiler:
            profiler.disable()
            profiler.dump_stats(str(args.profile))
        cpu, pg, wall = time.process_time() - cpu0, backend_cpu_ms(pid) - pg0, time.perf_counter() - wall0
        count = len(measured)
        n_statements = statements["n"]
        # contacts' contact_created for each sender, as it comes after their first email
        created = [{"contact_id": str(uuid.uuid4()), "emails": [address]} for address in dict.fromkeys(
            (e["data"].get("attributed_to") or {}).get("email") for e in measured) if address]
        statements["n"] = 0
        created_cpu0, created_pg0 = time.process_time(), backend_cpu_ms(pid)
        for start in range(0, len(created), args.batch):
            with database.transaction() as session:
                for data in created[start:start + args.batch]:
                    contact_corrections.learn_contact(session, data)
        created_cpu, created_pg = time.process_time() - created_cpu0, backend_cpu_ms(pid) - created_pg0
        with database.transaction() as session:
            stored = session.execute(text("SELECT count(*) FROM messages")).scalar()
        print(f"{count} message_received (after {args.warmup} warm-up), {args.batch} per transaction, "
              f"{stored} messages stored")
        print(f"  python CPU      {cpu * 1000 / count:7.2f} ms per event")
        print(f"  postgres CPU    {pg / count:7.2f} ms per event (the one backend)")
        print(f"  statements      {n_statements / count:7.2f} per event")
        print(f"  wall            {wall * 1000 / count:7.2f} ms per event (load {os.getloadavg()[0]:.1f})")
        print(f"{len(created)} contact_created (learn_contact), {args.batch} per transaction")
        print(f"  python CPU      {created_cpu * 1000 / len(created):7.2f} ms per event")
        print(f"  postgres CPU    {created_pg / len(created):7.2f} ms per event")
        print(f"  statements      {statements['n'] / len(created):7.2f} per event")
        if os.environ.get("BENCH_ECHO"):
            import logging
            logging.basicConfig()
            logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
            for batch in chunks(events[args.warmup:args.warmup + 16]):
                run(batch)
        for key, times in sorted(per_statement.items(), key=lambda kv: -sum(kv[1]))[:25]:
            print(f"  {sum(times) * 1000 / count:6.2f} ms/event {len(times) / count:5.2f}x  {key}")
        database.dispose()
    finally:
        with admin.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
