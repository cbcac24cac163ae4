"""The compiled event readers (mailroom_shared.events.compiled) against marshmallow itself, on
every schema of the catalogue: for data of the right shape, and for data with wrong, convertible,
null, missing and unknown values, the compiled reader returns what marshmallow returns or raises
marshmallow's own error."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from mailroom_shared.events import compiled
from mailroom_shared.events.catalogue import CATALOGUE

SPECS = sorted(CATALOGUE.values(), key=lambda spec: spec.key)
IDS = [f"{spec.name}.v{spec.version}" for spec in SPECS]

# values marshmallow converts, refuses or treats specially, whatever the field
ODD = [None, "5", 5, 5.0, 5.5, 1, 0, 1.0, True, False, "true", "", b"bytes", b"\xff", [], (), {}, ["x"], ("x",),
       {"x": 1}, "smtp"]
ODD_VALUES = st.sampled_from(ODD)


def _choices(field: fields.Field) -> list | None:
    for validator in field.validators:
        if isinstance(validator, validate.OneOf):
            return list(validator.choices)
    return None


def well_formed(field: fields.Field) -> st.SearchStrategy:
    """Values of exactly the field's type (what producers publish and consumers receive)."""
    if isinstance(field, fields.Nested):
        return schema_data(field.schema, unknown_keys=False, odd=False)
    if isinstance(field, fields.List):
        least = max([v.min or 0 for v in field.validators if isinstance(v, validate.Length)], default=0)
        return st.lists(well_formed(field.inner), min_size=least, max_size=least + 3)
    if isinstance(field, fields.String):
        choices = _choices(field)
        return st.sampled_from(choices) if choices else st.text(max_size=8)
    if isinstance(field, fields.Boolean):
        return st.booleans()
    if isinstance(field, fields.Integer):
        return st.integers(min_value=-2**40, max_value=2**40)
    if isinstance(field, fields.Dict):
        return st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4), max_size=3)
    return st.text(max_size=4) | st.integers() | st.none()


def any_value(field: fields.Field) -> st.SearchStrategy:
    if isinstance(field, fields.Nested):
        nested = schema_data(field.schema, unknown_keys=True, odd=True)
    elif isinstance(field, fields.List):
        nested = st.lists(any_value(field.inner), max_size=3) | st.tuples(any_value(field.inner))
    else:
        nested = st.nothing()
    return well_formed(field) | ODD_VALUES | nested


def schema_data(schema: Schema, *, unknown_keys: bool, odd: bool) -> st.SearchStrategy:
    @st.composite
    def build(draw):
        data = {}
        for name, field in schema.load_fields.items():
            key = field.data_key or name
            # a required field is sometimes missing only in the odd data
            if draw(st.booleans()) if (odd or not field.required) else True:
                data[key] = draw(any_value(field) if odd else well_formed(field))
        if unknown_keys and draw(st.booleans()):
            data[draw(st.sampled_from(["extra", "from", "from_", "Subject"]))] = draw(ODD_VALUES)
        return data
    return build()


def _slots(value, found):
    """Every dict and list inside `value` (itself included), to mutate one."""
    if isinstance(value, dict):
        found.append(value)
        for each in value.values():
            _slots(each, found)
    elif isinstance(value, list):
        found.append(value)
        for each in value:
            _slots(each, found)
    return found


@st.composite
def one_mutation(draw, schema: Schema):
    """Well-formed data with exactly one thing wrong or unusual somewhere inside it: a value
    replaced by an odd one, a key removed, an unknown key added. The case a compiled reader can
    get wrong without the rest of the data sending it to marshmallow anyway."""
    data = draw(schema_data(schema, unknown_keys=False, odd=False))
    container = draw(st.sampled_from(_slots(data, [])))
    odd = draw(ODD_VALUES)
    if isinstance(container, list):
        if container:
            container[draw(st.integers(0, len(container) - 1))] = odd
        else:
            container.append(odd)
    elif container and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(container)))
        if draw(st.booleans()):
            del container[key]
        else:
            container[key] = odd
    else:
        container[draw(st.sampled_from(["extra", "from", "from_", "email", "name"]))] = odd
    return data


def _outcome(function, data):
    """What `function` made of `data`, compared by repr: types (True is not 1) and key order too."""
    try:
        return "ok", repr(function(data))
    except ValidationError as error:
        return "error", repr(error.messages)


def _both(spec, unknown):
    schema = spec.schema(unknown=unknown)
    reference = spec.schema(unknown=unknown)
    return schema, reference


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("unknown", [None, EXCLUDE], ids=["strict", "tolerant"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_compiled_reader_agrees_with_marshmallow(spec, unknown, data):
    schema, reference = _both(spec, unknown)
    sample = data.draw(one_mutation(schema) | schema_data(schema, unknown_keys=True, odd=True)
                       | schema_data(schema, unknown_keys=False, odd=False))
    assert _outcome(compiled.loader(schema), sample) == _outcome(reference.load, sample)
    assert _outcome(compiled.round_tripper(schema), sample) == \
        _outcome(lambda d: reference.dump(reference.load(d)), sample)


def full_example(field: fields.Field):
    """One value of exactly the field's type, every optional part present."""
    if isinstance(field, fields.Nested):
        return {(f.data_key or name): full_example(f) for name, f in field.schema.load_fields.items()}
    if isinstance(field, fields.List):
        return [full_example(field.inner)]
    if isinstance(field, fields.String):
        return (_choices(field) or ["text"])[0]
    if isinstance(field, fields.Boolean):
        return True
    if isinstance(field, fields.Integer):
        return 7
    return {"kind": "email", "value": "a@example.com"}


def single_changes(value):
    """Copies of `value` with exactly one change anywhere inside it: each odd value in each
    place, each key removed, an unknown key added to each object."""
    if isinstance(value, dict):
        yield {**value, "unknown_key": 1}
        for key in value:
            yield {k: v for k, v in value.items() if k != key}
            for odd in ODD:
                yield {**value, key: odd}
            for changed in single_changes(value[key]):
                yield {**value, key: changed}
    elif isinstance(value, list):
        for index, each in enumerate(value):
            for odd in ODD:
                yield [*value[:index], odd, *value[index + 1:]]
            for changed in single_changes(each):
                yield [*value[:index], changed, *value[index + 1:]]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("unknown", [None, EXCLUDE], ids=["strict", "tolerant"])
def test_every_single_change_anywhere_agrees_with_marshmallow(spec, unknown):
    schema, reference = _both(spec, unknown)
    example = {(f.data_key or name): full_example(f) for name, f in schema.load_fields.items()}
    load, round_trip = compiled.loader(schema), compiled.round_tripper(schema)
    checked = 0
    for changed in single_changes(example):
        assert _outcome(load, changed) == _outcome(reference.load, changed), changed
        assert _outcome(round_trip, changed) == _outcome(lambda d: reference.dump(reference.load(d)), changed), changed
        checked += 1
    assert checked > 20


def _compilable(spec) -> bool:
    schema = spec.schema()
    try:
        compiled._schema_reader(schema, schema.unknown, wire_keys=True)
    except compiled.NotCompilable:
        return False
    return True


COMPILED = [spec for spec in SPECS if _compilable(spec)]  # the others: test_only_the_erasure_confirmations…


@pytest.mark.parametrize("spec", COMPILED, ids=[f"{spec.name}.v{spec.version}" for spec in COMPILED])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_well_formed_events_take_the_compiled_path(spec, data):
    """The point of compiling: data of exactly the right types never reaches marshmallow."""
    schema = spec.schema()
    fast = compiled._schema_reader(schema, schema.unknown, wire_keys=True)
    sample = data.draw(schema_data(schema, unknown_keys=False, odd=False))
    assert fast(sample) == schema.dump(schema.load(sample))


def test_only_the_erasure_confirmations_fall_back_to_marshmallow():
    refused = set()
    for spec in SPECS:
        schema = spec.schema()
        try:
            compiled._schema_reader(schema, schema.unknown, wire_keys=False)
        except compiled.NotCompilable:
            refused.add(spec.name)
    assert refused == {"contact_messages_erased", "contact_mail_erased", "contact_sent_mail_erased",
                       "contact_notifications_erased"}


class _Inner(Schema):
    email = fields.String(allow_none=True, load_default=None)


class _Event(Schema):
    tags = fields.List(fields.String(), load_default=list)
    sender = fields.Nested(_Inner, required=True)
    extra = fields.Dict(load_default=dict)
    from_ = fields.String(data_key="from", required=True)


def test_results_share_no_container_with_the_input_and_keys_follow_marshmallow():
    data = {"tags": ["a"], "sender": {"email": "x@example.com"}, "extra": {"k": 1}, "from": "y@example.com"}
    loaded = compiled.loader(_Event())(data)
    assert loaded == {"tags": ["a"], "sender": {"email": "x@example.com"}, "extra": {"k": 1},
                      "from_": "y@example.com"}
    loaded["tags"].append("b")
    loaded["sender"]["email"] = None
    loaded["extra"]["k"] = 2
    assert data == {"tags": ["a"], "sender": {"email": "x@example.com"}, "extra": {"k": 1}, "from": "y@example.com"}
    published = compiled.round_tripper(_Event())(data)
    assert list(published) == ["tags", "sender", "extra", "from"]
    assert compiled.round_tripper(_Event())({"sender": {}, "from": "y"}) == \
        {"tags": [], "sender": {"email": None}, "extra": {}, "from": "y"}


def test_errors_are_marshmallows_own():
    with pytest.raises(ValidationError) as caught:
        compiled.loader(_Event())({"sender": {"email": 5, "name": "x"}, "tags": "a"})
    assert caught.value.messages == {
        "sender": {"email": ["Not a valid string."], "name": ["Unknown field."]},
        "tags": ["Not a valid list."],
        "from": ["Missing data for required field."]}


def test_convertible_values_are_converted_as_marshmallow_converts_them():
    class Counts(Schema):
        size = fields.Integer(required=True)
        spam = fields.Boolean(required=True)

    assert compiled.loader(Counts())({"size": "12", "spam": "yes"}) == {"size": 12, "spam": True}
    with pytest.raises(ValidationError) as caught:
        compiled.loader(Counts())({"size": True, "spam": 1})
    assert caught.value.messages == {"size": ["Not a valid integer."]}


class _Unmodelled(Schema):
    when = fields.DateTime(required=True)


def test_a_schema_with_unmodelled_fields_is_read_by_marshmallow():
    import datetime as dt
    assert compiled.loader(_Unmodelled())({"when": "2026-12-07T10:00:00+00:00"}) == \
        {"when": dt.datetime(2026, 12, 7, 10, tzinfo=dt.UTC)}
    assert compiled.round_tripper(_Unmodelled())({"when": "2026-12-07T10:00:00+00:00"}) == \
        {"when": "2026-12-07T10:00:00+00:00"}
