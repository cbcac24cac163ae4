"""The catalogue's marshmallow schemas compiled into plain Python readers for the common case.

Every published event went through `schema.load` and `schema.dump`, and every consumed one
through `schema.load`: about 5 ms of CPU per inbound email in the conversations service alone
(bench/handler_bench.py, #16), nearly all of it marshmallow's generic machinery (an error store,
a getter closure and several calls per field) spent on data that is almost always already exactly
right. The schemas stay the one source of truth: this module reads them (field types, required,
allow_none, load_default, data_key, validators, unknown) and builds, per schema, a function that
accepts only data whose every value already has its exact type (`str`, `int` but not `bool`,
`True`/`False`, `list`, `dict`) and returns what marshmallow would. Anything else (a missing
required field, a wrong or merely convertible type, a failed validator, an unknown field where
the schema raises) is handed to marshmallow itself, which converts it or raises its own
ValidationError, so errors and conversions are marshmallow's, word for word.

A schema with anything this module does not model (schema or field hooks, other field types,
`many`, `only`/`exclude`, a dump default, a dotted attribute) is not compiled: its reader is
marshmallow's own. shared/tests/test_compiled_schemas.py checks the two agree on every schema
of the catalogue, on generated and mutated data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, fields
from marshmallow.exceptions import ValidationError
from marshmallow.utils import missing


class _Slow(Exception):
    """The data is not in the compiled reader's domain: let marshmallow decide."""


class NotCompilable(Exception):
    """The schema uses something the compiler does not model."""


_SLOW = _Slow()
Reader = Callable[[Any], Any]


def _checked(field: fields.Field) -> None:
    if field.pre_load or field.post_load:
        raise NotCompilable(f"{field!r}: field pre_load/post_load")
    if field.dump_default is not missing:
        raise NotCompilable(f"{field!r}: dump_default")
    if field.attribute is not None and "." in field.attribute:
        raise NotCompilable(f"{field!r}: dotted attribute")


def _value_reader(field: fields.Field, wire_keys: bool) -> Reader:
    """A reader for a present value of `field` (None included): the loaded value, or _Slow."""
    _checked(field)
    allow_none = field.allow_none
    validators = field.validators
    kind = type(field)
    if kind is fields.String:
        def convert(value):
            if type(value) is not str:
                raise _SLOW
            return value
    elif kind is fields.Integer:
        if field.as_string:
            raise NotCompilable(f"{field!r}: as_string")

        def convert(value):
            if type(value) is not int:  # bool, float, "5": marshmallow converts or refuses
                raise _SLOW
            return value
    elif kind is fields.Boolean:
        if field.truthy is not fields.Boolean.truthy or field.falsy is not fields.Boolean.falsy:
            raise NotCompilable(f"{field!r}: own truthy/falsy")

        def convert(value):
            if value is not True and value is not False:
                raise _SLOW
            return value
    elif kind is fields.Raw or kind is fields.Field:
        def convert(value):
            return value
    elif kind is fields.Dict:
        if field.key_field is not None or field.value_field is not None:
            raise NotCompilable(f"{field!r}: Dict with keys/values")

        def convert(value):
            if type(value) is not dict:
                raise _SLOW
            return dict(value)
    elif kind is fields.List:
        inner = _value_reader(field.inner, wire_keys)

        def convert(value):
            if type(value) is not list:
                raise _SLOW
            return [inner(each) for each in value]
    elif kind is fields.Nested:
        if field.many or field.only is not None or field.exclude:
            raise NotCompilable(f"{field!r}: Nested with many/only/exclude")
        nested = field.schema
        convert = _schema_reader(nested, field.unknown or nested.unknown, wire_keys)
    else:
        raise NotCompilable(f"{field!r}: {kind.__name__} is not modelled")

    if not validators:
        if allow_none:
            def read(value):
                return None if value is None else convert(value)
            return read

        def read(value):
            if value is None:
                raise _SLOW
            return convert(value)
        return read

    run_validators = field._validate

    def read(value):
        if value is None:
            if allow_none:
                return None
            raise _SLOW
        output = convert(value)
        try:
            run_validators(output)
        except ValidationError:
            raise _SLOW from None
        return output
    return read


def _schema_reader(schema: Schema, unknown: str, wire_keys: bool) -> Reader:
    if schema.many or schema.only is not None or schema.exclude or schema.partial:
        raise NotCompilable(f"{schema!r}: many/only/exclude/partial")
    if any(schema._hooks.values()):
        raise NotCompilable(f"{schema!r}: schema hooks")
    if unknown not in (RAISE, EXCLUDE):
        raise NotCompilable(f"{schema!r}: unknown={unknown!r}")
    if set(schema.load_fields) != set(schema.dump_fields):
        raise NotCompilable(f"{schema!r}: load_only/dump_only fields")
    plan = []
    for attr_name, field in schema.load_fields.items():
        data_key = field.data_key if field.data_key is not None else attr_name
        out_key = data_key if wire_keys else (field.attribute or attr_name)
        default = field.load_default
        plan.append((data_key, out_key, _value_reader(field, wire_keys), field.required, default,
                     callable(default)))
    plan = tuple(plan)
    known = frozenset(entry[0] for entry in plan)
    raise_on_unknown = unknown == RAISE

    def read(data):
        if type(data) is not dict:
            raise _SLOW
        if raise_on_unknown and not known.issuperset(data):
            raise _SLOW
        output = {}
        get = data.get
        for data_key, out_key, read_value, required, default, default_is_factory in plan:
            value = get(data_key, missing)
            if value is missing:
                if required:
                    raise _SLOW
                if default is not missing:
                    output[out_key] = default() if default_is_factory else default
                continue
            output[out_key] = read_value(value)
        return output
    return read


def loader(schema: Schema) -> Reader:
    """`schema.load`, compiled where the data allows (see the module's docstring)."""
    try:
        fast = _schema_reader(schema, schema.unknown, wire_keys=False)
    except NotCompilable:
        return schema.load
    slow = schema.load

    def load(data):
        try:
            return fast(data)
        except _Slow:
            return slow(data)
    return load


def round_tripper(schema: Schema) -> Reader:
    """`schema.dump(schema.load(data))`, compiled where the data allows: what a producer
    publishes (validated and in wire form, keys by data_key)."""
    def slow(data):
        return schema.dump(schema.load(data))
    try:
        fast = _schema_reader(schema, schema.unknown, wire_keys=True)
    except NotCompilable:
        return slow

    def round_trip(data):
        try:
            return fast(data)
        except _Slow:
            return slow(data)
    return round_trip
