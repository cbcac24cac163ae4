"""marshmallow schemas of the contacts HTTP API (the OpenAPI document is generated from them)."""

from marshmallow import Schema, fields, validate


class ContactSchema(Schema):
    id = fields.String()
    name = fields.String(allow_none=True)
    emails = fields.List(fields.String())
    identities = fields.List(fields.Dict(), metadata={
        "description": "chat identities: {kind: phone (E.164) | messenger (PSID) | livechat, value}"})
    created_at = fields.DateTime()


class ContactCreateSchema(Schema):
    name = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=320))
    emails = fields.List(fields.String(), required=True, validate=validate.Length(min=1, max=20))


class ContactUpdateSchema(Schema):
    name = fields.String(required=True, allow_none=True, validate=validate.Length(max=320),
                         metadata={"description": "the new name (null or blank: none)"})


class ContactMergeSchema(Schema):
    contact_id = fields.String(required=True, validate=validate.Length(min=1, max=36),
                               metadata={"description": "the contact merged into this one (it is deleted)"})


class ContactEmailSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=320))


class TimelineAttachmentSchema(Schema):
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    sha256 = fields.String()
    url = fields.String(allow_none=True, metadata={
        "description": "an inbound message's attachment carries a download token for the caller (`?access=`, "
                       "valid 1 hour), as in conversations' messages"})


class TimelineEntrySchema(Schema):
    id = fields.String()
    direction = fields.String()
    message_id = fields.String(attribute="rfc_message_id")
    subject = fields.String()
    snippet = fields.String()
    channel_address = fields.String(allow_none=True)
    channel_addresses = fields.List(fields.String(), metadata={
        "description": "every inbox address the email reached that the caller may see (one email sent to several "
                       "of our inboxes is one entry), the first one first"})
    inbox_ids = fields.List(fields.String(), metadata={
        "description": "the inboxes of channel_addresses (and of a chat or form entry)"})
    conversation_id = fields.String(allow_none=True)
    attachments = fields.List(fields.Nested(TimelineAttachmentSchema))
    forwarded_by = fields.Dict(allow_none=True)
    occurred_at = fields.DateTime()
    kind = fields.String(metadata={"enum": ["message", "call"],
                                   "description": "message: an email, chat message or form submission; call: a call "
                                                  "logged in conversations (docs/calls.md), its fields in `call`"})
    call = fields.Dict(allow_none=True, metadata={
        "description": "kind call: {call_id, direction inbound|outbound, phone_number (E.164), outcome, "
                       "duration_seconds, notes, recording_url, logged_by, called_at}"})


class ContactPageSchema(Schema):
    items = fields.List(fields.Nested(ContactSchema))
    next_cursor = fields.String(allow_none=True)


class TimelinePageSchema(Schema):
    items = fields.List(fields.Nested(TimelineEntrySchema))
    next_cursor = fields.String(allow_none=True)


class ErasureSchema(Schema):
    """An erasure (GDPR art. 17) and what each service erased, as counts (no personal data)."""

    id = fields.String()
    contact_id = fields.String()
    requested_by = fields.String()
    requested_at = fields.String()
    status = fields.String(metadata={"description": "pending until conversations, ingest and outbound confirmed; "
                                                    "then complete"})
    completed_at = fields.String(allow_none=True)
    services = fields.Dict(keys=fields.String(), values=fields.Dict(allow_none=True), metadata={
        "description": "per service (contacts, conversations, ingest, outbound): {kind: count} erased, "
                       "null until it confirmed"})
