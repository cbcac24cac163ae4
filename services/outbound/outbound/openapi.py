"""The outbound HTTP API, described for docs/openapi.yaml."""

from apispec import APISpec
from marshmallow import Schema, fields

from mailroom_shared import openapi
from mailroom_shared.openapi import Operation
from outbound import schemas


class PageArgs(Schema):
    cursor = fields.String()
    limit = fields.Integer()


class InboxEmailsArgs(PageArgs):
    state = fields.String(metadata={"enum": ["queued", "deferred", "sent", "failed", "bounced"]})


class ReplyDefaultsArgs(Schema):
    message_id = fields.String(metadata={"description": "default: the latest inbound message"})
    reply_all = fields.Boolean()


class SuppressionArgs(PageArgs):
    include_lifted = fields.Boolean(metadata={"description": "also those a member lifted"})


class InboxFilterArgs(Schema):
    inbox_id = fields.String(metadata={"description": "only those of this inbox (and those of every inbox)"})


COMPONENTS = {
    "Compose": schemas.ComposeSchema, "Reply": schemas.ReplySchema, "Forward": schemas.ForwardSchema,
    "Email": schemas.EmailSchema, "EmailPage": schemas.EmailListSchema, "ReplyDefaults": schemas.ReplyDefaultsSchema,
    "TemplateInput": schemas.TemplateInputSchema, "Template": schemas.TemplateSchema,
    "TemplatePage": schemas.TemplateListSchema, "SnippetInput": schemas.SnippetInputSchema,
    "Snippet": schemas.SnippetSchema, "SnippetPage": schemas.SnippetListSchema,
    "RenderInput": schemas.RenderInputSchema, "Rendered": schemas.RenderedSchema,
    "Suppression": schemas.SuppressionSchema, "SuppressionPage": schemas.SuppressionListSchema,
    "AutoAcknowledgement": schemas.AutoAcknowledgementSchema,
}

_SEND_ERRORS = (400, 401, 403, 404, 409, 422)  # 422: a recipient is on the suppression list

OPERATIONS = [
    Operation("post", "/api/outbound/inboxes/{inbox_id}/emails",
              "Compose a new email from an inbox (starts a conversation). Header `Idempotency-Key`: the same "
              "key sends once (200 with the first email); with another request, 409", "Email", status=202,
              path_params=("inbox_id",), body="Compose", errors=_SEND_ERRORS),
    Operation("get", "/api/outbound/inboxes/{inbox_id}/emails", "Emails sent from an inbox with their delivery "
              "state, newest first", "EmailPage", path_params=("inbox_id",), query=InboxEmailsArgs, errors=(400, 401)),
    Operation("get", "/api/outbound/inboxes/{inbox_id}/suppressions", "The inbox's suppression list: addresses "
              "that hard-bounced (5xx at RCPT TO, or a DSN with status 5.x.x), not sent to until a member lifts "
              "them; newest first", "SuppressionPage", path_params=("inbox_id",), query=SuppressionArgs,
              errors=(400, 401, 404)),
    Operation("delete", "/api/outbound/inboxes/{inbox_id}/suppressions/{address}", "Lift a suppression (members "
              "of the inbox only): the address may be sent to again", None, status=204,
              path_params=("inbox_id", "address"), errors=(400, 401, 403, 404)),
    Operation("get", "/api/outbound/inboxes/{inbox_id}/auto-acknowledgement", "The inbox's automatic "
              "acknowledgement of new conversations (off by default)", "AutoAcknowledgement",
              path_params=("inbox_id",), errors=(401, 404)),
    Operation("put", "/api/outbound/inboxes/{inbox_id}/auto-acknowledgement", "Set it (members only): a template "
              "sent as an RFC 3834 auto-reply (Auto-Submitted: auto-replied) to the Return-Path of a new "
              "conversation's first message, never to automatic mail, bounces, lists, spam or our own inboxes, at "
              "most once per sender per `period_hours`", "AutoAcknowledgement", path_params=("inbox_id",),
              body="AutoAcknowledgement", errors=(400, 401, 403, 404)),
    Operation("get", "/api/outbound/conversations/{conversation_id}/reply-defaults",
              "To, CC, From and Subject a reply starts with (from the message replied to)", "ReplyDefaults",
              path_params=("conversation_id",), query=ReplyDefaultsArgs, errors=(400, 401, 403, 404)),
    Operation("post", "/api/outbound/conversations/{conversation_id}/replies",
              "Reply (or reply-all) in a conversation; header `Idempotency-Key`", "Email", status=202,
              path_params=("conversation_id",), body="Reply", errors=_SEND_ERRORS),
    Operation("post", "/api/outbound/conversations/{conversation_id}/forwards",
              "Forward a message or the whole conversation (quoted or attached); header `Idempotency-Key`",
              "Email", status=202, path_params=("conversation_id",), body="Forward", errors=_SEND_ERRORS),
    Operation("get", "/api/outbound/conversations/{conversation_id}/emails",
              "Our emails of a conversation with their delivery state, newest first", "EmailPage",
              path_params=("conversation_id",), query=PageArgs, errors=(400, 401)),
    Operation("get", "/api/outbound/emails/{email_id}", "One email with its delivery state and attempts", "Email",
              path_params=("email_id",), errors=(401, 404)),
    Operation("get", "/api/outbound/emails/{email_id}/attachments/{attachment_id}", "An attachment's bytes", None,
              path_params=("email_id", "attachment_id"), response_media_type="application/octet-stream",
              errors=(401, 404)),
    Operation("get", "/api/outbound/templates", "Email templates the caller may see (account-wide ones, those "
              "of inboxes the caller may view, the caller's personal ones)", "TemplatePage", query=InboxFilterArgs,
              errors=(401,)),
    Operation("post", "/api/outbound/templates", "Create an email template (jinja2 syntax, sandboxed) in a scope "
              "the caller manages: account (super admins), inbox (its members), personal", "Template",
              status=201, body="TemplateInput", errors=(400, 401, 403, 404)),
    Operation("get", "/api/outbound/templates/{template_id}", "One template (404 if the caller may not see it)",
              "Template", path_params=("template_id",), errors=(401, 404)),
    Operation("put", "/api/outbound/templates/{template_id}", "Change a template (or its scope) the caller "
              "manages", "Template", path_params=("template_id",), body="TemplateInput",
              errors=(400, 401, 403, 404, 409)),
    Operation("delete", "/api/outbound/templates/{template_id}", "Delete a template the caller manages", None,
              status=204, path_params=("template_id",), errors=(401, 403, 404, 409)),
    Operation("post", "/api/outbound/templates/{template_id}/render",
              "Render a template with the tokens of a conversation or inbox the caller may view (404 otherwise) "
              "and a contact", "Rendered", path_params=("template_id",), body="RenderInput",
              errors=(400, 401, 404)),
    Operation("get", "/api/outbound/snippets", "Snippets the caller may see", "SnippetPage", query=InboxFilterArgs,
              errors=(401,)),
    Operation("post", "/api/outbound/snippets", "Create a snippet in a scope the caller manages", "Snippet",
              status=201, body="SnippetInput", errors=(400, 401, 403, 404, 409)),
    Operation("get", "/api/outbound/snippets/{snippet_id}", "One snippet (404 if the caller may not see it)",
              "Snippet", path_params=("snippet_id",), errors=(401, 404)),
    Operation("put", "/api/outbound/snippets/{snippet_id}", "Change a snippet (or its scope) the caller manages",
              "Snippet", path_params=("snippet_id",), body="SnippetInput", errors=(400, 401, 403, 404, 409)),
    Operation("delete", "/api/outbound/snippets/{snippet_id}", "Delete a snippet the caller manages", None,
              status=204, path_params=("snippet_id",), errors=(401, 403, 404, 409)),
    Operation("post", "/api/outbound/snippets/{snippet_id}/render",
              "Render a snippet for insertion into the composer (tokens as for a template)", "Rendered",
              path_params=("snippet_id",), body="RenderInput", errors=(400, 401, 404)),
]


def register(spec: APISpec) -> None:
    openapi.register(spec, "outbound", COMPONENTS, OPERATIONS)
