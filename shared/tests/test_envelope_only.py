"""A consumer that names the fields it reads (`@consumes(..., reads=...)`) gets only those, checked."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError

from mailroom_shared.events.envelope import build_envelope, parse_envelope

DATA = {"contact_id": "c-1", "name": "Dana", "emails": ["dana@customer.example"], "created_from": "api"}


def _contact_created() -> dict:
    return build_envelope("contact_created", "c-1", dict(DATA))


def test_only_the_named_fields_are_read():
    envelope = _contact_created()
    whole = parse_envelope(envelope, "contact_created")
    assert len(whole) > 1
    assert parse_envelope(envelope, "contact_created", frozenset({"contact_id"})) == {"contact_id": "c-1"}


def test_a_named_field_is_still_checked_and_an_unnamed_one_is_not():
    envelope = _contact_created()
    envelope["data"]["contact_id"] = 42  # not a string
    with pytest.raises(ValidationError):
        parse_envelope(envelope, "contact_created", frozenset({"contact_id"}))
    del envelope["data"]["contact_id"]
    with pytest.raises(ValidationError):  # required and named: a missing one still dead-letters
        parse_envelope(envelope, "contact_created", frozenset({"contact_id"}))
    others = frozenset(envelope["data"]) - {"contact_id"}
    assert "contact_id" not in parse_envelope(envelope, "contact_created", others)
