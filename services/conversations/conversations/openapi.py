"""OpenAPI hook: `register(spec)` adds the conversations API's schemas and paths to an
apispec.APISpec (with the marshmallow plugin). The table below is the whole description."""

from __future__ import annotations

from apispec import APISpec
from marshmallow import Schema

from conversations import schemas

TAG = "conversations"

COMPONENTS: dict[str, type[Schema]] = {
    "Inbox": schemas.InboxSchema, "InboxList": schemas.InboxListSchema,
    "InboxCreate": schemas.InboxCreateSchema, "InboxUpdate": schemas.InboxUpdateSchema,
    "ConversationSummary": schemas.ConversationSummarySchema, "ConversationPage": schemas.ConversationPageSchema,
    "Conversation": schemas.ConversationSchema, "ConversationMessage": schemas.ConversationMessageSchema,
    "Message": schemas.MessageSchema, "Error": schemas.ErrorSchema,
}

# (method, path, summary, path parameter, query schema, request body, success status, response, errors)
OPERATIONS = [
    ("get", "/api/inboxes", "List inboxes with their channels and members", None, None, None,
     200, "InboxList", ()),
    ("post", "/api/inboxes", "Create an inbox (announces inbox_updated)", None, None, "InboxCreate",
     201, "Inbox", (400, 409)),
    ("get", "/api/inboxes/{inbox_id}", "One inbox", "inbox_id", None, None, 200, "Inbox", (404,)),
    ("put", "/api/inboxes/{inbox_id}", "Change an inbox's name, channels or members (announces inbox_updated)",
     "inbox_id", None, "InboxUpdate", 200, "Inbox", (400, 404, 409)),
    ("get", "/api/inboxes/{inbox_id}/conversations", "A view of an inbox's conversations, newest activity first",
     "inbox_id", schemas.ConversationListArgsSchema, None, 200, "ConversationPage", (400, 404)),
    ("get", "/api/conversations/{conversation_id}", "A conversation with its messages, oldest first",
     "conversation_id", None, None, 200, "Conversation", (404,)),
    ("post", "/api/conversations/{conversation_id}/close", "Close a conversation (conversation_closed)",
     "conversation_id", None, None, 200, "ConversationSummary", (404,)),
    ("post", "/api/conversations/{conversation_id}/reopen", "Reopen a conversation (conversation_reopened)",
     "conversation_id", None, None, 200, "ConversationSummary", (404,)),
    ("get", "/api/messages/{message_id}", "One message in full (sanitised HTML preview, attachments)",
     "message_id", None, None, 200, "Message", (404,)),
]

_ERRORS = {400: "invalid request", 404: "not found", 409: "conflict"}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def register(spec: APISpec) -> None:
    for name, schema in COMPONENTS.items():
        if name not in spec.components.schemas:
            spec.components.schema(name, schema=schema)
    paths: dict[str, dict] = {}
    for method, path, summary, path_param, query, body, status, response, errors in OPERATIONS:
        operation: dict = {"tags": [TAG], "summary": summary, "parameters": [], "responses": {
            str(status): {"description": "OK", "content": {"application/json": {"schema": _ref(response)}}}}}
        if path_param:
            operation["parameters"].append({"in": "path", "name": path_param, "required": True,
                                            "schema": {"type": "string"}})
        if query:
            operation["parameters"].append({"in": "query", "schema": query})
        if body:
            operation["requestBody"] = {"required": True,
                                        "content": {"application/json": {"schema": _ref(body)}}}
        for code in errors:
            operation["responses"][str(code)] = {
                "description": _ERRORS[code], "content": {"application/json": {"schema": _ref("Error")}}}
        paths.setdefault(path, {})[method] = operation
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
