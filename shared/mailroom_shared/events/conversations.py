"""Events published by the conversations service (exchange `conversations.events`)."""

from marshmallow import Schema, fields

from mailroom_shared.events.common import AddressSchema


class InboxUpdatedV1(Schema):
    """An inbox was created or changed: other services keep the addresses they need."""

    inbox_id = fields.String(required=True)
    name = fields.String(required=True)
    channel_addresses = fields.List(fields.String(), required=True)
    member_emails = fields.List(fields.String(), load_default=list,
                                metadata={"description": "trusted forwarders"})
    primary_address = fields.String(allow_none=True, load_default=None,
                                    metadata={"description": "the default From identity"})


class ConversationCreatedV1(Schema):
    conversation_id = fields.String(required=True)
    inbox_id = fields.String(required=True)
    subject = fields.String(required=True)
    contact_email = fields.String(allow_none=True, load_default=None)
    contact_name = fields.String(allow_none=True, load_default=None)
    status = fields.String(required=True)
    spam = fields.Boolean(required=True)
    reopened_from = fields.String(allow_none=True, load_default=None)


class MessageAddedV1(Schema):
    conversation_id = fields.String(required=True)
    inbox_id = fields.String(required=True)
    message_id = fields.String(required=True, metadata={"description": "our id of the stored message"})
    rfc_message_id = fields.String(required=True)
    direction = fields.String(required=True)
    sender = fields.Nested(AddressSchema, allow_none=True, load_default=None)
    attributed_to = fields.Nested(AddressSchema, allow_none=True, load_default=None)
    subject = fields.String(required=True)
    intake_id = fields.String(allow_none=True, load_default=None)
    spam = fields.Boolean(load_default=False, metadata={"description": "the conversation is in the spam view"})


class ConversationReopenedV1(Schema):
    conversation_id = fields.String(required=True)
    inbox_id = fields.String(required=True)
    reason = fields.String(required=True, metadata={"description": "'reply' (a message arrived) or 'api'"})
    message_id = fields.String(allow_none=True, load_default=None,
                               metadata={"description": "our id of the message that reopened it"})


class ConversationClosedV1(Schema):
    conversation_id = fields.String(required=True)
    inbox_id = fields.String(required=True)
    reason = fields.String(required=True, metadata={"description": "'api' for now"})
    closed_by = fields.String(allow_none=True, load_default=None, metadata={"description": "user id, if known"})
