"""Events published by the outbound service (exchange `outbound.events`).

Delivery states, one event each: queued → sent | deferred (4xx, retried) → failed; a sent
message later matched by a DSN → bounced. `email_queued` and `email_sent` carry the whole
message (what conversations stores in the thread and contacts logs on the timeline); the other
states carry the ids and the reason.
"""

from marshmallow import Schema, fields, validate

from mailroom_shared.events.common import AddressSchema, AttachmentRefSchema
from mailroom_shared.events.contacts import ContactDataErasedV1

KINDS = ("compose", "reply", "forward")


class _EmailRef(Schema):
    email_id = fields.String(required=True, metadata={"description": "outbound's id of the email"})
    inbox_id = fields.String(required=True)
    conversation_id = fields.String(required=True)
    rfc_message_id = fields.String(required=True, metadata={"description": "Message-ID, without angle brackets"})


class _EmailContent(_EmailRef):
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    new_conversation = fields.Boolean(required=True, metadata={
        "description": "a composed email: conversations creates the conversation with this id"})
    reply_token = fields.String(allow_none=True, load_default=None, metadata={
        "description": "for a new conversation: its reply token (replies to support+<token>@… thread to it)"})
    replied_message_id = fields.String(allow_none=True, load_default=None, metadata={
        "description": "conversations' id of the message replied to or forwarded"})
    from_ = fields.Nested(AddressSchema, required=True, data_key="from")
    to = fields.List(fields.Nested(AddressSchema), required=True)
    cc = fields.List(fields.Nested(AddressSchema), load_default=list)
    bcc = fields.List(fields.Nested(AddressSchema), load_default=list,
                      metadata={"description": "envelope only: never in the sent headers"})
    reply_to = fields.List(fields.Nested(AddressSchema), load_default=list)
    subject = fields.String(required=True)
    text = fields.String(allow_none=True, load_default=None)
    html = fields.String(allow_none=True, load_default=None, metadata={"description": "sanitised"})
    in_reply_to = fields.List(fields.String(), load_default=list)
    references = fields.List(fields.String(), load_default=list)
    attachments = fields.List(fields.Nested(AttachmentRefSchema), load_default=list)
    automatic = fields.Boolean(load_default=False, metadata={"description": "Auto-Submitted: auto-generated"})
    queued_at = fields.String(required=True)


class EmailQueuedV1(_EmailContent):
    """A teammate's email was accepted and stored for delivery."""


class EmailSentV1(_EmailContent):
    """The SMTP relay accepted the email (250 to DATA)."""

    smtp_queue_id = fields.String(allow_none=True, load_default=None)
    smtp_response = fields.String(allow_none=True, load_default=None)
    sent_at = fields.String(required=True)
    attempts = fields.Integer(required=True)
    refused_recipients = fields.List(fields.String(), load_default=list,
                                     metadata={"description": "refused by the relay while others were accepted"})


class EmailDeferredV1(_EmailRef):
    """A temporary failure (4xx, connection trouble): retried at next_attempt_at."""

    attempts = fields.Integer(required=True)
    smtp_code = fields.Integer(allow_none=True, load_default=None)
    reason = fields.String(required=True)
    next_attempt_at = fields.String(required=True)


class EmailFailedV1(_EmailRef):
    """A permanent failure (5xx) or retries exhausted: the email was not sent."""

    attempts = fields.Integer(required=True)
    smtp_code = fields.Integer(allow_none=True, load_default=None)
    reason = fields.String(required=True)


class BouncedRecipientSchema(Schema):
    email = fields.String(required=True)
    status = fields.String(allow_none=True, load_default=None, metadata={"description": "DSN status, e.g. 5.1.1"})
    reason = fields.String(allow_none=True, load_default=None)
    suppressed = fields.Boolean(load_default=False, metadata={
        "description": "a hard bounce (5.x.x): the address is now on the inbox's suppression list"})


class EmailBouncedV1(_EmailRef):
    """A delivery status notification (DSN) for a sent email arrived through ingest."""

    bounce_intake_id = fields.String(required=True, metadata={"description": "ingest's id of the DSN"})
    reason = fields.String(required=True)
    bounce_raw_url = fields.String(allow_none=True, load_default=None)
    recipients = fields.List(fields.Nested(BouncedRecipientSchema), load_default=list, metadata={
        "description": "the recipients this DSN returned the email for (hard bounces are suppressed); empty when "
                       "the DSN named none of them (absent in events from before it was recorded)"})
    partial = fields.Boolean(load_default=False, metadata={
        "description": "true: other recipients were delivered, the email stays `sent` and only `recipients` "
                       "bounced; false: every recipient bounced (or the DSN did not say which)"})


class _ChatMessageRef(Schema):
    chat_message_id = fields.String(required=True, metadata={"description": "also the webhook-id the connector sees"})
    inbox_id = fields.String(required=True)
    conversation_id = fields.String(required=True)
    channel_id = fields.String(required=True)
    channel_kind = fields.String(required=True, metadata={"enum": ["whatsapp", "messenger", "livechat"]})
    thread_id = fields.String(required=True, metadata={"description": "the connector's thread (E.164, PSID, session)"})
    identity = fields.Dict(required=True, metadata={"description": "{kind, value}: the contact's chat identity"})


class _ChatMessageContent(_ChatMessageRef):
    text = fields.String(required=True)
    author_user_id = fields.String(allow_none=True, load_default=None)
    author_name = fields.String(allow_none=True, load_default=None)
    queued_at = fields.String(required=True)


class ChatMessageQueuedV1(_ChatMessageContent):
    """A reply to a chat conversation was stored for delivery to the connector's webhook."""


class ChatMessageSentV1(_ChatMessageContent):
    """The connector answered 2xx to the signed delivery."""

    sent_at = fields.String(required=True)
    attempts = fields.Integer(required=True)
    status = fields.Integer(required=True, metadata={"description": "the connector's HTTP status"})


class ChatMessageFailedV1(_ChatMessageRef):
    """The connector refused the reply (4xx other than 429) or retries were used up."""

    attempts = fields.Integer(required=True)
    status = fields.Integer(allow_none=True, load_default=None)
    reason = fields.String(required=True)


class ContactSentMailErasedV1(ContactDataErasedV1):
    """This service's confirmation of a contact_erased (contacts assembles the erasure report)."""
