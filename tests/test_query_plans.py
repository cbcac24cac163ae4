"""The hot-path queries use indexes: EXPLAIN on PostgreSQL databases that hold enough rows
(bench/seed.py, 40,000 existing messages, then VACUUM ANALYZE) that the planner would pick a
sequential scan for any query without a usable index.

The SQL is not written here: the services' own functions run (intake claim, the outbox relay,
receive_message, record_inbound_message, the conversation views, ...) while a SQLAlchemy listener
records every statement they send; each SELECT/UPDATE/DELETE is then EXPLAINed with its own
parameters. What it proves: with realistic statistics and `enable_seqscan` left on, none of those
plans reads a whole large table. What it does not prove: the plans at other data distributions,
or speed (no timing is asserted anywhere). Tiny tables by nature (channels, inboxes, members,
own_addresses, trusted_senders) may be scanned and are not checked.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event, text

from mailroom_shared.db import Database
from mailroom_shared.migrations import upgrade
from mailroom_testing.specs import CONTACTS, CONVERSATIONS, INGEST

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
ROWS = 40_000
LARGE_TABLES = {"intake", "outbox", "processed_events", "messages", "conversations", "contacts", "contact_emails",
                "timeline_entries", "message_conversations", "known_contacts"}
INDEX_NODES = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}


def _load_seed():
    spec = importlib.util.spec_from_file_location("bench_seed", REPO / "bench" / "seed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def databases(postgres_admin):
    urls = {spec.name: postgres_admin.create_database(f"plans_{spec.name}") for spec in (INGEST, CONTACTS,
                                                                                          CONVERSATIONS)}
    try:
        for spec in (INGEST, CONTACTS, CONVERSATIONS):
            upgrade(spec.name, spec.migrations, urls[spec.name])
        _load_seed().seed(urls, ROWS)
        handles = {name: Database(url) for name, url in urls.items()}
        yield handles
        for handle in handles.values():
            handle.dispose()
    finally:
        for url in urls.values():
            postgres_admin.drop_database(url)


@contextmanager
def recorded(database: Database):
    """Every statement sent on `database`'s engine while the block runs: (sql, parameters)."""
    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if not executemany:
            statements.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(database.engine, "before_cursor_execute", record)


@contextmanager
def scratch(database: Database):
    """A session whose changes are rolled back at the end (the seeded data stays as it is)."""
    with database.sessions() as session:
        try:
            yield session
        finally:
            session.rollback()


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def explain(session, statements, usable_only: bool = False) -> list[tuple[str, list[dict]]]:
    """(sql, plan nodes touching a large table) of each SELECT/UPDATE/DELETE/WITH recorded.

    usable_only: plan with enable_seqscan off, for statements where a sequential scan and an index
    are a cost tie on the seed (a Seq Scan still in the plan then means no index was usable)."""
    checked = []
    if usable_only:
        session.connection().exec_driver_sql("SET LOCAL enable_seqscan = off")
    for sql, parameters in list(statements):
        verb = sql.lstrip().split(None, 1)[0].upper()
        if verb not in ("SELECT", "UPDATE", "DELETE", "WITH"):  # WITH: a read, or a write that reads first
            continue
        raw = session.connection().exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", parameters).scalar_one()
        plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
        touching = [n for n in _nodes(plan) if n.get("Relation Name") in LARGE_TABLES]
        checked.append((sql, touching, plan))
    return checked


def assert_indexed(checked, expect_tables: set[str]) -> None:
    seen_tables = set()
    for sql, touching, plan in checked:
        for node in touching:
            seen_tables.add(node["Relation Name"])
            assert node["Node Type"] != "Seq Scan", \
                f"sequential scan of {node['Relation Name']} for:\n{sql}\nplan: {json.dumps(plan, indent=1)[:3000]}"
    assert expect_tables <= seen_tables, f"expected queries on {expect_tables}, saw {seen_tables}"
    for sql, touching, _plan in checked:
        for node in touching:
            if node["Node Type"] not in INDEX_NODES:  # e.g. a Bitmap Heap Scan above its Bitmap Index Scan
                assert node["Node Type"] in {"Bitmap Heap Scan", "ModifyTable", "LockRows"}, (node["Node Type"], sql)


def _message_received(channel: str, message_id: str, in_reply_to: list[str], email: str) -> dict:
    return {
        "intake_id": str(uuid.uuid4()), "channel_address": channel, "via": "smtp", "message_id": message_id,
        "subject": "Re: Order has not arrived", "date": None, "sender": {"name": "Customer", "email": email},
        "attributed_to": {"name": "Customer", "email": email}, "reply_to": [], "to": [], "cc": [],
        "in_reply_to": in_reply_to, "references": in_reply_to, "reply_token": None, "text": "Any news?",
        "html": None, "html_truncated": False, "remote_images_blocked": 0, "size": 900,
        "raw_url": "/api/ingest/messages/x/raw", "attachments": [],
        "flags": {"auto_submitted": False, "bounce": False, "spam": False, "loop": False, "reasons": []},
        "forward": None, "received_at": dt.datetime.now(dt.UTC).isoformat(),
    }


def test_intake_claim_uses_the_pending_index(databases):
    from ingest import handlers
    from ingest.models import Intake

    database = databases["ingest"]
    with database.transaction() as session:
        for n in range(3):  # a little backlog among 40,000 processed rows
            session.add(Intake(id=str(uuid.uuid4()), channel_address="support@mailroom.test", via="smtp",
                               dedupe_key=f"pending-{n}@x", blob_key="0" * 64, size=100, status="stored",
                               received_at=dt.datetime.now(dt.UTC)))
    with scratch(database) as session, recorded(database) as statements:
        assert len(handlers._claim_stored(session, 16)) == 3
        assert_indexed(explain(session, statements), {"intake"})


@pytest.mark.parametrize("service", ["ingest", "contacts", "conversations"])
def test_outbox_relay_reads_pending_rows_by_index(databases, service):
    from mailroom_shared.messaging.outbox import Outbox, OutboxRelay

    module = __import__(f"{service}.models", fromlist=["outbox"])
    database = databases[service]
    relay = OutboxRelay(database, module.outbox, publish_batch=lambda items: (len(items), None))
    with database.transaction() as session:
        Outbox(module.outbox).record(session, "inbox_updated" if service == "conversations" else
                                     "contact_created" if service == "contacts" else "message_quarantined",
                                     "subject", _event_data(service))
    with recorded(database) as statements:
        assert relay.relay_once() == 1
    with scratch(database) as session:
        assert_indexed(explain(session, statements), {"outbox"})


def _event_data(service: str) -> dict:
    if service == "conversations":
        return {"inbox_id": "i", "name": "n", "primary_address": "a@b.example", "channel_addresses": ["a@b.example"],
                "member_emails": []}
    if service == "contacts":
        return {"contact_id": str(uuid.uuid4()), "name": None, "emails": ["x@y.example"], "created_from": "t"}
    return {"intake_id": str(uuid.uuid4()), "channel_address": "support@mailroom.test", "via": "smtp",
            "reason": "test", "size": 1, "raw_url": "/x"}


def test_receiving_a_reply_looks_messages_up_by_inbox_and_message_id(databases):
    from conversations import handlers
    from conversations.service import ConversationsService
    from conversations.settings import Settings

    database = databases["conversations"]
    parent = "seed-12345@customer1.example"  # conversation 12345 % 10 = 5 → the support inbox
    data = _message_received("support@mailroom.test", f"<{uuid.uuid4()}@customer.example>", [f"<{parent}>"],
                             "customer2470@customer1.example")
    with scratch(database) as session, recorded(database) as statements:
        received = handlers.receive_message(session, ConversationsService.outbox, data, Settings())
        assert received.placement is not None and received.placement.action != "new"  # threaded to the seeded one
        assert_indexed(explain(session, statements), {"messages", "conversations"})


def test_learning_a_contact_updates_conversations_by_index(databases):
    from conversations import handlers

    database = databases["conversations"]
    with scratch(database) as session, recorded(database) as statements:
        handlers.learn_contact(session, str(uuid.uuid4()), ["customer77@customer4.example"])
        assert_indexed(explain(session, statements), {"conversations"})


def test_conversation_views_read_the_view_indexes(databases):
    from conversations import queries
    from mailroom_shared.auth import SUPER_ADMIN, Principal

    database = databases["conversations"]
    admin = Principal(user_id="bench-admin", roles=frozenset({SUPER_ADMIN}))
    inbox = "00000000-0000-4000-8000-000000000001"
    for view in ("open", "closed", "spam", "all"):
        with scratch(database) as session, recorded(database) as statements:
            page = queries.conversations_page(session, admin, inbox, view, None, 50)
            assert page["items"], view
            if page["next_cursor"]:  # the second page: the keyset condition must use the index too
                from mailroom_shared.http import decode_cursor

                queries.conversations_page(session, admin, inbox, view, decode_cursor(page["next_cursor"]), 50)
            assert_indexed(explain(session, statements), {"conversations"})


def test_an_inbound_message_finds_its_contact_by_email_and_links_its_conversation(databases):
    from contacts import handlers
    from contacts.service import ContactsService
    from contacts.settings import Settings

    database = databases["contacts"]
    data = _message_received("support@mailroom.test", "new-message@customer.example", [],
                             "customer321@customer0.example")
    with scratch(database) as session, recorded(database) as statements:
        entry = handlers.record_inbound_message(session, ContactsService.outbox, data, str(uuid.uuid4()), Settings())
        assert entry is not None
        assert handlers.find_contact_by_email(session, "customer321@customer0.example") is not None
        handlers.link_conversation(session, "f" * 32, str(uuid.uuid4()))
        handlers.link_conversation(session, data["intake_id"], str(uuid.uuid4()))
        session.flush()
        assert_indexed(explain(session, statements), {"contacts", "contact_emails", "timeline_entries"})


def test_a_redelivered_event_is_recognised_by_the_processed_events_key(databases):
    from contacts.service import ContactsService

    database = databases["contacts"]
    with scratch(database) as session, recorded(database) as statements:
        event_id = session.execute(text("SELECT event_id FROM processed_events LIMIT 1")).scalar_one()
        source = session.execute(text("SELECT source FROM processed_events WHERE event_id = :e"),
                                 {"e": event_id}).scalar_one()
        statements.clear()
        envelope = {"source": source, "id": event_id}
        claimed = ContactsService.processed.claim(session, envelope, "handle_message_received")
        assert claimed is False
        # One statement and no read: INSERT … ON CONFLICT DO NOTHING, which PostgreSQL resolves
        # through the primary key's unique index (it cannot do otherwise: the index is the arbiter).
        [(sql, _)] = statements
        assert sql.lstrip().upper().startswith("INSERT INTO PROCESSED_EVENTS")
        assert "ON CONFLICT DO NOTHING" in sql.upper()
        primary_key = session.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'processed_events' AND indexname = 'pk_processed_events'"
        )).scalar_one()
        assert "UNIQUE" in primary_key and "(source, event_id, handler)" in primary_key


def test_conversation_lists_with_unread_state_and_search_read_indexes(databases):
    """The list with the reader's unread state (read_marks joined, ix_messages_inbound_created
    probed per row) and `?q=`: a text on every conversation (the window probe fills the page) and
    a rare one (the trigram indexes, ix_conversations_search_trgm / ix_messages_search_trgm)."""
    from conversations import queries
    from mailroom_shared.auth import Principal
    from mailroom_shared.http import decode_cursor

    database = databases["conversations"]
    reader = Principal(user_id="bench-agent")  # the support inbox is visible to everyone
    inbox = "00000000-0000-4000-8000-000000000001"
    with database.transaction() as session:
        page = queries.conversations_page(session, reader, inbox, "all", None, 50)
        for item in page["items"][:10]:
            queries.mark_read(session, reader, item["id"])
    for q in (None, "has not ARRIVED", "customer322@customer"):
        with scratch(database) as session, recorded(database) as statements:
            page = queries.conversations_page(session, reader, inbox, "all", None, 50, q)
            assert page["items"], q
            if q is None:
                assert [item["unread"] for item in page["items"][:12]] == [False] * 10 + [True] * 2
                queries.conversations_page(session, reader, inbox, "all", decode_cursor(page["next_cursor"]), 50)
            # with q, the ids matched through the trigram indexes are a few hundred: reading them by
            # primary key or filtering a sequential scan of the seed's conversations is a cost tie
            # that the planner settled either way between runs
            assert_indexed(explain(session, statements, usable_only=q is not None), {"conversations", "messages"})
    with scratch(database) as session, recorded(database) as statements:
        queries.mark_read(session, reader, page["items"][0]["id"])
        assert_indexed(explain(session, statements), {"conversations", "messages"})
