"""OpenAPI hook: `register(spec)` adds the conversations API's schemas and paths to an
apispec.APISpec (with the marshmallow plugin). The table below is the whole description."""

from __future__ import annotations

from apispec import APISpec
from marshmallow import Schema

from conversations import schemas
from mailroom_shared import openapi
from mailroom_shared.openapi import Operation

TAG = "conversations"

COMPONENTS: dict[str, type[Schema]] = {
    "Inbox": schemas.InboxSchema, "InboxList": schemas.InboxListSchema,
    "InboxCreate": schemas.InboxCreateSchema, "InboxUpdate": schemas.InboxUpdateSchema,
    "ConversationSummary": schemas.ConversationSummarySchema, "ConversationPage": schemas.ConversationPageSchema,
    "Conversation": schemas.ConversationSchema, "ConversationMessage": schemas.ConversationMessageSchema,
    "Message": schemas.MessageSchema, "ViewCounts": schemas.ViewCountsSchema,
    "Assign": schemas.AssignSchema, "CommentCreate": schemas.CommentCreateSchema, "Comment": schemas.CommentSchema,
    "Close": schemas.CloseSchema, "TicketInput": schemas.TicketInputSchema, "Ticket": schemas.TicketSchema,
    "Move": schemas.MoveSchema, "SentPage": schemas.SentPageSchema, "Attribution": schemas.AttributionSchema,
    "AttributionResult": schemas.AttributionResultSchema,
    "ConnectorChannelCreate": schemas.ConnectorChannelCreateSchema, "ConnectorChannel": schemas.ConnectorChannelSchema,
    "ConnectorChannelList": schemas.ConnectorChannelListSchema, "ChatMessageInput": schemas.ChatMessageInputSchema,
    "FormSubmissionInput": schemas.FormSubmissionInputSchema,
    "ConnectorMessageAccepted": schemas.ConnectorMessageAcceptedSchema,
    "CallCreate": schemas.CallCreateSchema, "Call": schemas.CallSchema, "CallList": schemas.CallListSchema,
}

ACT = (400, 401, 403, 404, 409)  # actions: 403 = may view the inbox but is no member; 404 = may not view it
# (method, path, summary, path parameter, query schema, request body, success status, response, errors)
OPERATIONS = [
    ("get", "/api/inboxes", "The inboxes you may view, with your permissions in each", None, None, None,
     200, "InboxList", (401,)),
    ("post", "/api/inboxes", "Create an inbox (admins; announces inbox_updated)", None, None, "InboxCreate",
     201, "Inbox", (400, 401, 403, 409)),
    ("get", "/api/inboxes/{inbox_id}", "One inbox", "inbox_id", None, None, 200, "Inbox", (401, 404)),
    ("put", "/api/inboxes/{inbox_id}", "Change an inbox's name, channels, members or access (admins; announces "
     "inbox_updated)", "inbox_id", None, "InboxUpdate", 200, "Inbox", (400, 401, 403, 404, 409)),
    ("get", "/api/inboxes/{inbox_id}/conversations", "A view of an inbox's conversations, newest activity first, "
     "each with your unread state; ?q= searches", "inbox_id", schemas.ConversationListArgsSchema, None, 200,
     "ConversationPage", (400, 401, 404, 422)),
    ("get", "/api/inboxes/{inbox_id}/sent", "The inbox's Sent view: our messages, newest first, with their "
     "delivery state (queued, sent, deferred, failed, bounced)", "inbox_id", None, None, 200, "SentPage",
     (400, 401, 404)),
    ("get", "/api/inboxes/{inbox_id}/views", "How many conversations each view of an inbox holds, and how many "
     "are unread for you",
     "inbox_id", None, None, 200, "ViewCounts", (401, 404)),
    ("get", "/api/conversations", "A view across every inbox you may view, newest activity first, each with "
     "your unread state; ?q= searches", None, schemas.ConversationListArgsSchema, None, 200, "ConversationPage",
     (400, 401, 422)),
    ("get", "/api/conversations/views", "How many conversations each view holds across your inboxes, and how "
     "many are unread for you",
     None, None, None, 200, "ViewCounts", (401,)),
    ("get", "/api/conversations/{conversation_id}", "A conversation with its messages (oldest first), comments "
     "and ticket", "conversation_id", None, None, 200, "Conversation", (401, 404)),
    ("post", "/api/conversations/{conversation_id}/read", "Mark read for yourself, up to its newest inbound "
     "message (your own state: any viewer may; no event)", "conversation_id", None, None, 204, None, (401, 404)),
    ("post", "/api/conversations/{conversation_id}/unread", "Mark unread for yourself until you read it again "
     "(your own state: any viewer may; no event)", "conversation_id", None, None, 204, None, (401, 404)),
    ("post", "/api/conversations/{conversation_id}/close", "Close a conversation, and its ticket with "
     "close_ticket (conversation_closed, ticket_closed)", "conversation_id", None, "Close", 200,
     "ConversationSummary", ACT),
    ("post", "/api/conversations/{conversation_id}/reopen", "Reopen a conversation (conversation_reopened)",
     "conversation_id", None, None, 200, "ConversationSummary", ACT),
    ("post", "/api/conversations/{conversation_id}/assign", "Assign, reassign or unassign to a member of the "
     "inbox (conversation_assigned); with expected_assignee_user_id one of concurrent assignments wins",
     "conversation_id", None, "Assign", 200, "ConversationSummary", ACT),
    ("post", "/api/conversations/{conversation_id}/comments", "Add an internal comment, never emailed, "
     "@mentioning members (comment_added)", "conversation_id", None, "CommentCreate", 201, "Comment", ACT),
    ("post", "/api/conversations/{conversation_id}/calls", "Log a call (members; call_logged): the number in E.164, "
     "422 naming a field that is not valid; header `Idempotency-Key`: the same key logs once (200 with that call "
     "again, 409 with another request)", "conversation_id", None, "CallCreate", 201, "Call", (*ACT, 422)),
    ("get", "/api/conversations/{conversation_id}/calls", "The calls logged on a conversation, oldest first",
     "conversation_id", None, None, 200, "CallList", (401, 404)),
    ("post", "/api/conversations/{conversation_id}/ticket", "Create a ticket for the conversation, or associate "
     "an existing one (ticket_associated)", "conversation_id", None, "TicketInput", 200, "Ticket", ACT),
    ("post", "/api/conversations/{conversation_id}/move", "Move the conversation to another inbox you are a "
     "member of (conversation_moved)", "conversation_id", None, "Move", 200, "ConversationSummary", ACT),
    ("post", "/api/conversations/{conversation_id}/spam", "Mark spam (conversation_spam_marked)",
     "conversation_id", None, None, 200, "ConversationSummary", ACT),
    ("post", "/api/conversations/{conversation_id}/not-spam", "Mark not spam: back into the inbox; the held-back "
     "contact is announced (conversation_spam_marked)", "conversation_id", None, None, 200,
     "ConversationSummary", ACT),
    ("put", "/api/conversations/{conversation_id}/messages/{message_id}/attribution", "Correct whom an inbound "
     "message belongs to (message_attribution_corrected keeps the previous attribution)", ("conversation_id",
     "message_id"), None, "Attribution", 200, "AttributionResult", ACT),
    ("get", "/api/messages/{message_id}", "One message in full (sanitised HTML preview; ?images=load re-sanitises "
     "from the raw message with remote images; URLs carry a download token)", "message_id",
     schemas.MessageArgsSchema, None, 200, "Message", (400, 401, 404, 503)),
    # chat and form channels (docs/channels.md); /api/channels/… is signed by the connector
    # (Standard Webhooks headers with the channel's secret), not called with a bearer token
    ("post", "/api/inboxes/{inbox_id}/channels", "Create a chat (whatsapp, messenger, livechat) or form channel "
     "of an inbox (admins); the answer holds its connector secret, shown once", "inbox_id", None,
     "ConnectorChannelCreate", 201, "ConnectorChannel", (400, 401, 403, 404, 503)),
    ("get", "/api/inboxes/{inbox_id}/channels", "The inbox's chat and form channels (without secrets)",
     "inbox_id", None, None, 200, "ConnectorChannelList", (401, 404)),
    ("post", "/api/channels/{channel_id}/messages", "A chat connector's message (signed: webhook-id, "
     "webhook-timestamp, webhook-signature); 201 stored, 200 the same message id again (channel_message_received, "
     "message_added)", "channel_id", None, "ChatMessageInput", 201, "ConnectorMessageAccepted",
     (400, 401, 404, 413, 503)),
    ("post", "/api/channels/{channel_id}/submissions", "A form connector's submission (signed like chat "
     "messages): a conversation with the submitter, replies by email", "channel_id", None, "FormSubmissionInput",
     201, "ConnectorMessageAccepted", (400, 401, 404, 413, 503)),
    Operation("get", "/api/messages/{message_id}/channel-attachments/{attachment_id}", "A file a connector sent "
              "inline with a chat message or form submission", None, path_params=("message_id", "attachment_id"),
              response_media_type="application/octet-stream", errors=(401, 404)),
]

def register(spec: APISpec) -> None:
    operations = [
        Operation(method, path, summary, response, status=status,
                  path_params=(path_param,) if isinstance(path_param, str) else tuple(path_param or ()),
                  query=query, body=body, errors=tuple(errors))
        for method, path, summary, path_param, query, body, status, response, errors in
        (op for op in OPERATIONS if isinstance(op, tuple))
    ] + [op for op in OPERATIONS if isinstance(op, Operation)]
    openapi.register(spec, TAG, COMPONENTS, operations)
