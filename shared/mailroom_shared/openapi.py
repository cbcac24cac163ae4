"""Builds OpenAPI paths from a service's small table of operations (see each service's
openapi.py). `mailroom docs` collects every service's table into docs/openapi.yaml."""

from __future__ import annotations

from dataclasses import dataclass

from apispec import APISpec
from marshmallow import Schema, fields

ERROR_DESCRIPTIONS = {400: "invalid request", 401: "no or invalid token", 403: "not allowed",
                      404: "not found, or not visible to you", 409: "conflict", 410: "gone",
                      413: "payload too large", 415: "unsupported media type",
                      422: "understood but cannot be done as asked", 429: "too many requests: slow down",
                      503: "temporarily unavailable: try again"}


class ErrorSchema(Schema):
    class _Body(Schema):
        code = fields.String()
        message = fields.String()
        details = fields.Raw(allow_none=True)

    error = fields.Nested(_Body)


class PageArgs(Schema):
    """The query of every cursor-paginated list."""

    cursor = fields.String(metadata={"description": "next_cursor of the previous page"})
    limit = fields.Integer(metadata={"description": "items per page"})


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    response: str | None  # component name of the JSON body; None for a non-JSON body
    status: int = 200
    path_params: tuple[str, ...] = ()
    query: type[Schema] | None = None
    body: str | None = None  # component name of the JSON request body
    raw_body: str | None = None  # media type of a non-JSON request body (e.g. message/rfc822)
    response_media_type: str = "application/json"
    errors: tuple[int, ...] = ()


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def register(spec: APISpec, tag: str, components: dict[str, type[Schema]], operations: list[Operation]) -> None:
    """Every operation requires a bearer JWT (docs/access.md)."""
    if "bearer" not in spec.components.security_schemes:
        spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    if "Error" not in spec.components.schemas:
        spec.components.schema("Error", schema=ErrorSchema)
    for name, schema in components.items():
        if name not in spec.components.schemas:
            spec.components.schema(name, schema=schema)
    paths: dict[str, dict] = {}
    for op in operations:
        content = ({"application/json": {"schema": _ref(op.response)}} if op.response
                   else {op.response_media_type: {"schema": {"type": "string", "format": "binary"}}})
        operation: dict = {"tags": [tag], "summary": op.summary, "parameters": [], "security": [{"bearer": []}],
                           "responses": {str(op.status): {"description": "OK", "content": content}}}
        for name in op.path_params:
            operation["parameters"].append({"in": "path", "name": name, "required": True,
                                            "schema": {"type": "string"}})
        if op.query:
            operation["parameters"].append({"in": "query", "schema": op.query})
        if op.body:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(op.body)}}}
        if op.raw_body:
            operation["requestBody"] = {"required": True, "content": {
                op.raw_body: {"schema": {"type": "string", "format": "binary"}}}}
        # every operation can answer 401 (it requires a bearer token) and 400 (the kit refuses a NUL
        # character in any parameter): documented on each, so clients and schemathesis expect them
        for code in sorted({400, 401, *op.errors}):
            operation["responses"][str(code)] = {"description": ERROR_DESCRIPTIONS[code],
                                                 "content": {"application/json": {"schema": _ref("Error")}}}
        paths.setdefault(op.path, {})[op.method] = operation
    for path, ops in paths.items():
        spec.path(path=path, operations=ops)
