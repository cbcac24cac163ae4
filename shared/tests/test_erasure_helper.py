"""mailroom_shared.erasure, the one helper every erasing service uses (issue #17): the keys of a
contact_erased event (tolerant of malformed and hostile parts), the JSON match (whole strings,
any case, LIKE wildcards literal) and dropping a person's outbox rows not relayed yet, on SQLite."""

import datetime as dt
import uuid

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, select

from mailroom_shared.db import Database
from mailroom_shared.erasure import ErasureKeys, drop_pending_events, erasure_keys, mentions
from mailroom_shared.messaging.outbox import outbox_table


def test_keys_are_normalised_and_malformed_parts_ignored():
    keys = erasure_keys({"contact_id": "c-1", "emails": [" Ada <ADA@Example.COM> ", "not an address", 7, None,
                                                         "ada@example.com"],
                         "identities": [{"kind": "phone", "value": "+4930123"}, {"kind": "x"}, "junk", None]})
    assert keys == ErasureKeys("c-1", ("ada@example.com",), ("+4930123",))
    assert keys.all == ["ada@example.com", "+4930123", "c-1"]
    assert erasure_keys({}) == ErasureKeys("", (), ())
    assert erasure_keys({"emails": "ada@example.com", "identities": {"value": "x"}}).all == []
    assert len(erasure_keys({"emails": [f"a{n}@x.example" for n in range(5000)]}).emails) == 500


@pytest.fixture
def database(tmp_path):
    metadata = MetaData()
    outbox = outbox_table(metadata)
    rows = Table("rows", metadata, Column("id", Integer, primary_key=True), Column("doc", outbox.c.envelope.type))
    database = Database(f"sqlite:///{tmp_path / 'erasure.db'}")
    metadata.create_all(database.engine)
    yield database, outbox, rows
    database.dispose()


def test_mentions_matches_whole_strings_in_any_case_and_wildcards_literally(database):
    db, _outbox, rows = database
    with db.transaction() as session:
        session.execute(rows.insert(), [{"id": 1, "doc": {"to": [{"email": "Ada@Example.com"}]}},
                                        {"id": 2, "doc": {"to": [{"email": "xada@example.com"}]}},
                                        {"id": 3, "doc": {"text": "mail ada@example.com please"}},
                                        {"id": 4, "doc": {"to": [{"email": "%"}]}}])
    with db.transaction() as session:
        def matched(values):
            return sorted(session.execute(select(rows.c.id).where(mentions(rows.c.doc, values))).scalars())
        assert matched(["ada@example.com"]) == [1]
        assert matched(["%"]) == [4]
        assert matched(["_da@example.com"]) == []
        assert matched([]) == [] and matched([""]) == []


def test_only_the_persons_unrelayed_events_are_dropped(database):
    db, outbox, _rows = database
    now = dt.datetime.now(dt.UTC)

    def row(event_type, data, published=False):
        event_id = str(uuid.uuid4())
        return {"event_id": event_id, "event_type": event_type, "attempts": 0, "created_at": now,
                "published_at": now if published else None, "envelope": {"id": event_id, "subject": "s",
                                                                          "data": data}}
    items = {"hers": row("email_sent", {"to": [{"email": "ada@example.com"}]}),
             "by_id": row("timeline_entry_added", {"contact_id": "c-1"}),
             "by_handle": row("chat_message_sent", {"identity": {"value": "+4930123"}}),
             "merge": row("contacts_merged", {"merged_emails": ["ada@example.com"]}),
             "erased": row("contact_erased", {"emails": ["ada@example.com"]}),
             "relayed": row("email_sent", {"to": [{"email": "ada@example.com"}]}, published=True),
             "bobs": row("email_sent", {"to": [{"email": "bob@example.com"}]})}
    with db.transaction() as session:
        session.execute(outbox.insert(), list(items.values()))
    keys = erasure_keys({"contact_id": "c-1", "emails": ["ada@example.com"],
                         "identities": [{"kind": "phone", "value": "+4930123"}]})
    with db.transaction() as session:
        assert drop_pending_events(session, outbox, keys, keep=frozenset({"contacts_merged"})) == 3
        assert drop_pending_events(session, outbox, ErasureKeys("", (), ())) == 0
    with db.transaction() as session:
        left = set(session.execute(select(outbox.c.event_id)).scalars())
    assert left == {items[k]["event_id"] for k in ("merge", "erased", "relayed", "bobs")}
