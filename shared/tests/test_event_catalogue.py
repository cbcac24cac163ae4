"""The event catalogue holds each (name, version) once, versions of a name are 1..N from one
producer, and no published version's schema changes in a way that breaks its consumers: every
schema is compared with the committed snapshot (event_schemas.json).

After an additive change (a new optional field, a new version), regenerate the snapshot:

    MAILROOM_UPDATE_EVENT_SNAPSHOT=1 .venv/bin/python -m pytest -q shared/tests/test_event_catalogue.py

A breaking change is refused even then: add a new version instead (see catalogue.py).
"""

import json
import os
from pathlib import Path

import pytest
from marshmallow import Schema, fields, validate

from mailroom_shared.events import catalogue, contacts, ingest
from mailroom_shared.events.catalogue import CATALOGUE, SPECS, Catalogue, EventSpec, catalogue_problems
from mailroom_shared.events.common import AddressSchema
from mailroom_shared.events.compatibility import compare, snapshot

SNAPSHOT = Path(__file__).with_name("event_schemas.json")
UPDATE = "MAILROOM_UPDATE_EVENT_SNAPSHOT"
REGENERATE = f"{UPDATE}=1 .venv/bin/python -m pytest -q shared/tests/test_event_catalogue.py"


def committed() -> dict:
    return json.loads(SNAPSHOT.read_text())


def render(document: dict) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


# --- the catalogue itself ---------------------------------------------------------------------

def test_each_name_and_version_is_listed_once_and_versions_are_contiguous():
    assert catalogue_problems(SPECS) == []
    assert len(CATALOGUE) == len(SPECS)  # nothing overwritten
    for name in catalogue.EVENT_NAMES:
        assert catalogue.versions(name) == tuple(range(1, len(catalogue.versions(name)) + 1)), name
        assert len({spec.producer for spec in SPECS if spec.name == name}) == 1, name


def test_every_version_has_its_cloudevents_type():
    for (name, version), spec in CATALOGUE.items():
        assert spec.cloudevents_type == f"mailroom.{name}.v{version}"
        assert catalogue.spec_for_type(spec.cloudevents_type) is spec
        assert catalogue.spec_for(name, version) is spec
        assert catalogue.parse_type(spec.cloudevents_type) == (name, version)


def spec(name: str, version: int, producer: str = "contacts", schema=contacts.ContactCreatedV1) -> EventSpec:
    return EventSpec(name, producer, version, schema, "test")


class ContactCreatedV2(Schema):
    contact_id = fields.String(required=True)


class ContactCreatedV3(Schema):
    contact_id = fields.String(required=True)


def test_the_checker_finds_duplicates_gaps_and_a_second_producer():
    assert catalogue_problems([spec("a_b", 1), spec("a_b", 2, schema=ContactCreatedV2)]) == []
    assert any("listed more than once" in p for p in catalogue_problems([spec("a_b", 1), spec("a_b", 1)]))
    assert any("not 1..N" in p for p in catalogue_problems([spec("a_b", 1), spec("a_b", 3, schema=ContactCreatedV3)]))
    assert any("not 1..N" in p for p in catalogue_problems([spec("a_b", 2, schema=ContactCreatedV2)]))
    assert any("different producers" in p
               for p in catalogue_problems([spec("a_b", 1), spec("a_b", 2, "ingest", ContactCreatedV2)]))
    assert any("should be named ...V2" in p for p in catalogue_problems([spec("a_b", 1), spec("a_b", 2)]))
    assert any("snake_case" in p for p in catalogue_problems([spec("Bad.Name", 1)]))
    assert any("integers from 1" in p for p in catalogue_problems([spec("a_b", 0)]))
    with pytest.raises(ValueError, match="listed more than once"):
        Catalogue([*SPECS, SPECS[0]])


def test_lookups_say_what_is_unknown_or_ambiguous():
    two = Catalogue([*SPECS, spec("contact_created", 2, schema=ContactCreatedV2)])
    assert two.spec_for("contact_created", 2).schema is ContactCreatedV2
    assert two.spec_for_type("mailroom.contact_created.v2").version == 2
    assert two.versions["contact_created"] == (1, 2)
    with pytest.raises(catalogue.VersionRequired, match=r"has versions \[1, 2\]: name the version"):
        two.spec_for("contact_created")
    assert catalogue.spec_for("contact_created").version == 1  # the only version
    with pytest.raises(KeyError, match="unknown version 2 of event 'contact_created'"):
        catalogue.spec_for("contact_created", 2)
    with pytest.raises(KeyError, match="unknown event type 'nothing_happened'"):
        catalogue.spec_for("nothing_happened", 1)
    with pytest.raises(KeyError, match="not a mailroom event type"):
        catalogue.spec_for_type("com.example.contact_created")
    assert catalogue.versions("nothing_happened") == ()
    assert catalogue.exchange_of("email_sent") == "outbound.events"


# --- the schemas do not break -------------------------------------------------------------------

def test_no_published_schema_changed_incompatibly():
    current = snapshot(SPECS)
    breaking, additive = compare(committed(), current)
    assert not breaking, (
        "breaking change(s) to published event schemas:\n  " + "\n  ".join(breaking)
        + "\nA published version never changes incompatibly: add a new version (FooV2 and a new catalogue "
          "entry, see mailroom_shared/events/catalogue.py) and leave the old one as it was.")
    if os.environ.get(UPDATE) == "1":
        SNAPSHOT.write_text(render(current))
    assert render(current) == SNAPSHOT.read_text(), (
        "the event schema snapshot is out of date" + (":\n  " + "\n  ".join(additive) if additive else "")
        + f"\nThese changes are compatible; record them with:\n  {REGENERATE}")


def with_schema(replaced: EventSpec, schema: type[Schema]) -> list[EventSpec]:
    return [EventSpec(s.name, s.producer, s.version, schema, s.summary) if s is replaced else s for s in SPECS]


CONTACT_CREATED = catalogue.spec_for("contact_created", 1)


def test_the_checker_catches_a_deliberately_broken_schema():
    class Broken(Schema):  # a copy of ContactCreatedV1, broken four ways
        contact_id = fields.Integer(required=True)  # type changed
        full_name = fields.String(allow_none=True, load_default=None)  # `name` renamed
        emails = fields.List(fields.String(), required=True)
        created_from = fields.String(required=True)
        identities = fields.List(fields.Dict())
        creator = fields.String(required=True)  # a new required field

    breaking, _additive = compare(snapshot(SPECS), snapshot(with_schema(CONTACT_CREATED, Broken)))
    assert sorted(breaking) == sorted([
        "contact_created.v1.contact_id: type changed from String to Integer",
        "contact_created.v1.name: removed (or renamed)",
        "contact_created.v1.creator: new required field (messages without it become invalid)",
    ]), breaking
    assert any("full_name" in change for change in _additive)


def test_the_checker_catches_breaks_deep_inside_and_in_flags():
    class StricterAddress(AddressSchema):
        email = fields.String(required=True, allow_none=True)  # was optional

    class ReceivedBroken(ingest.MessageReceivedV1):
        via = fields.String(required=True, validate=validate.OneOf(["smtp", "imap"]))  # a value dropped
        subject = fields.String(required=False, allow_none=True)  # may be missing or null now
        to = fields.List(fields.Nested(StricterAddress), load_default=list)  # a nested field made required
        in_reply_to = fields.List(fields.Integer(), load_default=list)  # items retyped

    received = catalogue.spec_for("message_received", 1)
    breaking, _additive = compare(snapshot(SPECS), snapshot(with_schema(received, ReceivedBroken)))
    assert sorted(breaking) == sorted([
        "message_received.v1.via: choices changed from ['smtp', 'imap', 'http'] to ['smtp', 'imap']",
        "message_received.v1.subject: required changed from True to False",
        "message_received.v1.subject: allow_none changed from False to True",
        "message_received.v1.to[items].email: required changed from False to True",
        "message_received.v1.in_reply_to[items]: type changed from String to Integer",
    ]), breaking


def test_the_checker_calls_a_removed_version_breaking_and_new_ones_additive():
    breaking, additive = compare(snapshot(SPECS), snapshot([s for s in SPECS if s is not CONTACT_CREATED]))
    assert breaking == ["contact_created.v1: removed from the catalogue (messages of this version may still be in "
                        "queues)"]

    class ContactCreatedV1(contacts.ContactCreatedV1):
        nickname = fields.String(allow_none=True, load_default=None)  # optional: compatible

    v2 = EventSpec("contact_created", "contacts", 2, ContactCreatedV2, "test")
    breaking, additive = compare(snapshot(SPECS), snapshot([*with_schema(CONTACT_CREATED, ContactCreatedV1), v2]))
    assert breaking == []
    assert sorted(additive) == ["contact_created.v1.nickname: new optional field", "contact_created.v2: new"]
