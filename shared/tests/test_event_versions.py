"""Two versions of one event side by side: producers record the version they declare, the relay
publishes each stored row with its own `type`, consumers read the schema named by `type`.

The catalogue has one version of everything today, so these tests add a `contact_created` v2
(`two_versions`) for their duration."""

import json

import pytest
from marshmallow import Schema, ValidationError, fields
from sqlalchemy import MetaData, select

from mailroom_shared.db import Database
from mailroom_shared.events import catalogue, envelope
from mailroom_shared.events.catalogue import EventSpec, VersionRequired
from mailroom_shared.events.envelope import InvalidEvent, build_envelope, envelope_version, parse_envelope
from mailroom_shared.messaging.nameko_adapters import OutboxRelayProvider
from mailroom_shared.messaging.outbox import (
    Outbox,
    OutboxRelay,
    PendingEvent,
    UndeclaredEvent,
    envelope_head,
    outbox_table,
)


class ContactCreatedV2(Schema):
    contact_id = fields.String(required=True)
    display_name = fields.String(required=True)
    addresses = fields.List(fields.String(), required=True)


V1_DATA = {"contact_id": "c1", "name": "Ann", "emails": ["ann@x.test"], "created_from": "api"}
V2_DATA = {"contact_id": "c2", "display_name": "Bob", "addresses": ["bob@x.test"]}
ENTRY = {"entry_id": "e1", "contact_id": "c1", "direction": "in", "message_id": "m1", "subject": "s"}


@pytest.fixture
def two_versions(monkeypatch):
    v2 = EventSpec("contact_created", "contacts", 2, ContactCreatedV2, "test: a second version")
    monkeypatch.setattr(catalogue, "_catalogue", catalogue.Catalogue([*catalogue.SPECS, v2]))
    yield
    envelope._publishable.cache_clear()  # drop the schemas cached for the test's v2
    envelope._tolerant_load.cache_clear()


@pytest.fixture
def database(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'outbox.db'}")
    yield database
    database.dispose()


@pytest.fixture
def table(database):
    table = outbox_table(MetaData())
    table.metadata.create_all(database.engine)
    return table


def rows(database, table):
    with database.transaction() as session:
        return session.execute(select(table.c.event_type, table.c.envelope).order_by(table.c.id)).all()


# --- producers ----------------------------------------------------------------------------------

def test_a_producer_records_the_version_it_declares(two_versions, database, table):
    v1, v2 = Outbox(table, publishes={"contact_created": 1}), Outbox(table, publishes={"contact_created": 2})
    with database.transaction() as session:
        assert v1.record(session, "contact_created", "c1", V1_DATA)["type"] == "mailroom.contact_created.v1"
        assert v2.record(session, "contact_created", "c2", V2_DATA)["type"] == "mailroom.contact_created.v2"
    stored = rows(database, table)
    # the event_type column keeps the event name (the routing key); the version is in the envelope
    assert [row.event_type for row in stored] == ["contact_created", "contact_created"]
    assert [row.envelope["type"] for row in stored] == ["mailroom.contact_created.v1", "mailroom.contact_created.v2"]
    with database.transaction() as session, pytest.raises(InvalidEvent, match="display_name"):
        v2.record(session, "contact_created", "c3", V1_DATA)  # validated against the declared version


def test_recording_an_undeclared_event_says_how_to_declare_it(database, table):
    outbox = Outbox(table, publishes={"contact_created": 1})
    with database.transaction() as session, pytest.raises(
            UndeclaredEvent, match=r"does not declare 'timeline_entry_added'.*publishes=\{'timeline_entry_added': 1\}"):
        outbox.record(session, "timeline_entry_added", "c1", ENTRY)
    assert rows(database, table) == []


def test_without_publishes_the_only_version_is_used_and_several_must_be_declared(two_versions, database, table):
    outbox = Outbox(table)
    with database.transaction() as session:
        assert outbox.record(session, "timeline_entry_added", "c1", ENTRY)["type"] == "mailroom.timeline_entry_added.v1"
    with database.transaction() as session, pytest.raises(VersionRequired, match=r"contact_created.*\[1, 2\]"):
        outbox.record(session, "contact_created", "c1", V1_DATA)


def test_publishes_is_checked_against_the_catalogue(table):
    with pytest.raises(KeyError, match="unknown version 2 of event 'contact_created'"):
        Outbox(table, publishes={"contact_created": 2})
    with pytest.raises(KeyError, match="unknown event type 'contact_exploded'"):
        Outbox(table, publishes={"contact_exploded": 1})
    with pytest.raises(TypeError, match="must be a version number"):
        Outbox(table, publishes={"contact_created": "1"})


def test_prebuilt_envelopes_must_be_the_declared_event_and_version(two_versions, database, table):
    outbox = Outbox(table, publishes={"contact_created": 2, "timeline_entry_added": 1})
    built = outbox.envelope("contact_created", "c2", V2_DATA)
    assert built["type"] == "mailroom.contact_created.v2"
    with database.transaction() as session:
        outbox.record_envelopes(session, [("contact_created", built)])
        with pytest.raises(UndeclaredEvent, match="publishes contact_created v2"):
            outbox.record_envelopes(session, [("contact_created", build_envelope("contact_created", "c", V1_DATA,
                                                                                 version=1))])
        with pytest.raises(InvalidEvent, match="recorded as 'contact_created'"):
            outbox.record_envelopes(session, [("contact_created", build_envelope("timeline_entry_added", "c", ENTRY))])
    assert len(rows(database, table)) == 1


# --- the relay ----------------------------------------------------------------------------------

def relay_items(database, table) -> list[tuple[PendingEvent, str, str]]:
    published = []

    def publish_batch(items):
        published.extend(items)
        return len(items), None

    OutboxRelay(database, table, publish_batch).relay_once()
    return published


def test_the_relay_publishes_each_row_with_the_type_it_was_recorded_with(two_versions, database, table):
    with database.transaction() as session:
        Outbox(table, publishes={"contact_created": 1}).record(session, "contact_created", "c1", V1_DATA)
        Outbox(table, publishes={"contact_created": 2}).record(session, "contact_created", "c2", V2_DATA)
    items = relay_items(database, table)
    assert [(event.type, event.source, exchange, key) for event, exchange, key in items] == [
        ("mailroom.contact_created.v1", "mailroom/contacts", "contacts.events", "contact_created"),
        ("mailroom.contact_created.v2", "mailroom/contacts", "contacts.events", "contact_created")]
    assert [json.loads(event.body)["data"]["contact_id"] for event, _e, _k in items] == ["c1", "c2"]


@pytest.mark.integration
def test_the_relay_reads_the_type_from_postgresql_rows_too(two_versions, make_database):
    database = Database(make_database("eventversions"))
    try:
        table = outbox_table(MetaData())
        table.metadata.create_all(database.engine)
        with database.transaction() as session:
            Outbox(table, publishes={"contact_created": 2}).record(session, "contact_created", "c2", V2_DATA)
        [(event, exchange, key)] = relay_items(database, table)
        assert (event.type, event.source, exchange, key) == (
            "mailroom.contact_created.v2", "mailroom/contacts", "contacts.events", "contact_created")
    finally:
        database.dispose()


def test_the_publisher_sends_the_stored_type_and_source_as_amqp_type_and_app_id():
    sent = []

    class Publisher:
        def publish_batch(self, messages):
            sent.extend(messages)
            return len(messages), None

    provider = OutboxRelayProvider("contacts", lambda: None)
    provider.publisher = Publisher()
    event = PendingEvent("id-1", "contact_created", "{}", "mailroom.contact_created.v2", "mailroom/contacts")
    assert provider._publish_batch([(event, "contacts.events", "contact_created")]) == (1, None)
    [message] = sent
    assert (message.exchange, message.routing_key, message.message_id, message.type, message.app_id) == (
        "contacts.events", "contact_created", "id-1", "mailroom.contact_created.v2", "mailroom/contacts")


def test_the_envelope_head_is_read_without_the_data_and_in_any_order():
    built = build_envelope("timeline_entry_added", "c1", ENTRY)
    assert envelope_head(json.dumps(built)) == {"source": "mailroom/contacts",
                                                "type": "mailroom.timeline_entry_added.v1"}
    # the data is never decoded when the head comes first: a body cut off inside it still reads,
    # in one match as written, and member by member (an escape in a name) as well
    cut = json.dumps(built)[:-40]
    assert envelope_head(cut)["type"] == "mailroom.timeline_entry_added.v1"
    assert envelope_head(cut.replace('"source"', '"sou\\u0072ce"')) == {
        "source": "mailroom/contacts", "type": "mailroom.timeline_entry_added.v1"}
    spaced = json.dumps(built, indent=3).replace('"type"', '"typ\\u0065"')
    assert envelope_head(spaced)["type"] == "mailroom.timeline_entry_added.v1"
    reordered = json.dumps({"data": {"type": "not this one", "x": [1, {"type": "nor this"}]}, **{
        k: v for k, v in built.items() if k != "data"}})
    assert envelope_head(reordered)["type"] == "mailroom.timeline_entry_added.v1"
    assert envelope_head(json.dumps({"id": "x", "data": {}})) == {}
    assert envelope_head("{}") == {}


# --- consumers ----------------------------------------------------------------------------------

def test_a_consumer_reads_the_schema_its_type_names(two_versions):
    v1 = build_envelope("contact_created", "c1", V1_DATA, version=1)
    v2 = build_envelope("contact_created", "c2", V2_DATA, version=2)
    assert parse_envelope(v1, "contact_created")["emails"] == ["ann@x.test"]
    assert parse_envelope(v2, "contact_created") == V2_DATA
    assert (envelope_version(v1), envelope_version(v2)) == (1, 2)
    v2["data"]["added_later"] = True  # still tolerant
    assert parse_envelope(v2, "contact_created") == V2_DATA
    with pytest.raises(ValidationError, match="addresses"):  # v2's required fields, not v1's
        parse_envelope({**v2, "data": {"contact_id": "c", "display_name": "d"}}, "contact_created")
    with pytest.raises(VersionRequired):
        build_envelope("contact_created", "c", V1_DATA)


def test_a_consumer_dead_letters_a_type_it_cannot_read():
    good = build_envelope("contact_created", "c1", V1_DATA)

    def problem(**changes) -> str:
        with pytest.raises(ValidationError) as raised:
            parse_envelope({**good, **changes}, "contact_created")
        return raised.value.messages["type"][0]

    assert "unknown version 2 of contact_created (this consumer knows v1)" in problem(
        type="mailroom.contact_created.v2")
    assert "is a timeline_entry_added event, not contact_created" in problem(type="mailroom.timeline_entry_added.v1")
    assert "is not a contact_created event" in problem(type="mailroom.contact_exploded.v1")
    assert "is not a mailroom event type" in problem(type="com.example.contact_created")
    assert "is not a mailroom event type" in problem(type=7)
    no_type = {k: v for k, v in good.items() if k != "type"}
    with pytest.raises(ValidationError, match="missing: a CloudEvents envelope names its type"):
        parse_envelope(no_type, "contact_created")
