"""What a published schema promises, as plain data, and which changes to it break consumers.

`snapshot(specs)` describes every (name, version): its producer and, for every field under its
wire name (`data_key`), the marshmallow field type, `required` and `allow_none` (when true), the
`OneOf` choices and, for Nested, List and Dict, the inner fields. shared/tests/event_schemas.json holds the snapshot of
the catalogue; shared/tests/test_event_catalogue.py compares it with the code:

* breaking (a new version is needed instead): a version removed from the catalogue, its producer
  changed, a field removed or renamed, a field's type changed, `required` or `allow_none` changed,
  the allowed values (OneOf) changed, a new required field — at any depth of nesting;
* additive (the same version, the snapshot is regenerated): a new version, a new optional field.

Descriptions and defaults are not part of the snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable

from marshmallow import Schema, fields, validate

from mailroom_shared.events.catalogue import EventSpec

_MAX_DEPTH = 10


def describe_schema(schema: Schema | type[Schema], depth: int = 0) -> dict:
    """{wire name: field description} of a schema (class or instance)."""
    instance = schema() if isinstance(schema, type) else schema
    return {(field.data_key or name): describe_field(field, depth)
            for name, field in sorted(instance.fields.items(), key=lambda item: item[1].data_key or item[0])}


def describe_field(field: fields.Field, depth: int = 0) -> dict:
    if depth > _MAX_DEPTH:
        raise ValueError("event schemas nest deeper than 10 levels (a recursive schema?)")
    described: dict = {"type": type(field).__name__}  # and only the flags that are true
    if field.required:
        described["required"] = True
    if field.allow_none:
        described["allow_none"] = True
    choices = [list(v.choices) for v in field.validators if isinstance(v, validate.OneOf)]
    if choices:
        described["choices"] = choices[0]
    if isinstance(field, fields.Nested):
        if field.many:
            described["many"] = True
        described["fields"] = describe_schema(field.schema, depth + 1)
    elif isinstance(field, fields.List):
        described["items"] = describe_field(field.inner, depth + 1)
    elif isinstance(field, fields.Dict):
        if field.key_field is not None:
            described["keys"] = describe_field(field.key_field, depth + 1)
        if field.value_field is not None:
            described["values"] = describe_field(field.value_field, depth + 1)
    return described


def snapshot(specs: Iterable[EventSpec]) -> dict:
    """{"<name>.v<N>": {"producer": ..., "fields": {...}}} for every spec, sorted."""
    return {f"{spec.name}.v{spec.version}": {"producer": spec.producer, "fields": describe_schema(spec.schema)}
            for spec in sorted(specs, key=lambda spec: (spec.name, spec.version))}


def compare(old: dict, new: dict) -> tuple[list[str], list[str]]:
    """(breaking changes, additive changes) from snapshot `old` to snapshot `new`."""
    breaking: list[str] = []
    additive: list[str] = []
    for key in old:
        if key not in new:
            breaking.append(f"{key}: removed from the catalogue (messages of this version may still be in queues)")
    for key in new:
        if key not in old:
            additive.append(f"{key}: new")
            continue
        if old[key]["producer"] != new[key]["producer"]:
            breaking.append(f"{key}: producer changed from {old[key]['producer']} to {new[key]['producer']}")
        _compare_fields(key, old[key]["fields"], new[key]["fields"], breaking, additive)
    return breaking, additive


def _compare_fields(path: str, old: dict, new: dict, breaking: list[str], additive: list[str]) -> None:
    for name in old:
        if name not in new:
            breaking.append(f"{path}.{name}: removed (or renamed)")
    for name in new:
        if name not in old:
            if new[name].get("required"):
                breaking.append(f"{path}.{name}: new required field (messages without it become invalid)")
            else:
                additive.append(f"{path}.{name}: new optional field")
        else:
            _compare_field(f"{path}.{name}", old[name], new[name], breaking, additive)


def _compare_field(path: str, old: dict, new: dict, breaking: list[str], additive: list[str]) -> None:
    if old["type"] != new["type"]:
        breaking.append(f"{path}: type changed from {old['type']} to {new['type']}")
        return
    for attribute, absent in (("required", False), ("allow_none", False), ("many", False), ("choices", None)):
        before, after = old.get(attribute, absent), new.get(attribute, absent)
        if before != after:
            breaking.append(f"{path}: {attribute} changed from {before!r} to {after!r}")
    if "fields" in old or "fields" in new:
        _compare_fields(path, old.get("fields", {}), new.get("fields", {}), breaking, additive)
    for part in ("items", "keys", "values"):
        if part in old and part in new:
            _compare_field(f"{path}[{part}]", old[part], new[part], breaking, additive)
        elif part in old or part in new:
            breaking.append(f"{path}: {part} changed from {old.get(part)!r} to {new.get(part)!r}")
