"""Events published by the contacts service (exchange `contacts.events`)."""

from marshmallow import Schema, fields


class ContactCreatedV1(Schema):
    contact_id = fields.String(required=True)
    name = fields.String(allow_none=True, load_default=None)
    emails = fields.List(fields.String(), required=True)
    created_from = fields.String(required=True, metadata={"description": "event id that created it, or 'api'"})
    identities = fields.List(fields.Dict(), metadata={
        "description": "chat identities ({kind: phone|messenger|livechat, value}) of a contact created for a chat "
                       "sender (then `emails` is empty); absent for others"})


class TimelineEntryAddedV1(Schema):
    entry_id = fields.String(required=True)
    contact_id = fields.String(required=True)
    direction = fields.String(required=True)
    message_id = fields.String(required=True)
    subject = fields.String(required=True)
    conversation_id = fields.String(allow_none=True, load_default=None)


class ContactUpdatedV1(Schema):
    contact_id = fields.String(required=True)
    name = fields.String(allow_none=True, load_default=None)
    emails = fields.List(fields.String(), required=True,
                         metadata={"description": "every address of the contact now (normalised), the main one first"})
    added = fields.List(fields.String(), load_default=list, metadata={"description": "addresses added by this change"})
    removed = fields.List(fields.String(), load_default=list,
                          metadata={"description": "addresses removed by this change"})
    previous_name = fields.String(allow_none=True, load_default=None,
                                  metadata={"description": "the name before a rename (equal to name otherwise)"})
    updated_by = fields.String(allow_none=True, load_default=None,
                               metadata={"description": "the user id of whoever changed it through the API"})


class ContactsMergedV1(Schema):
    survivor_id = fields.String(required=True, metadata={"description": "the contact that remains"})
    merged_id = fields.String(required=True, metadata={"description": "the contact merged into it (gone now)"})
    name = fields.String(allow_none=True, load_default=None)
    emails = fields.List(fields.String(), required=True,
                         metadata={"description": "every address of the survivor now (normalised), the main one first"})
    merged_emails = fields.List(fields.String(), load_default=list,
                                metadata={"description": "the addresses that came from the merged contact"})
    merged_by = fields.String(allow_none=True, load_default=None)


class ContactErasedV1(Schema):
    """GDPR art. 17: every service erases what it holds of this person and confirms with its own
    `*_erased` event naming `erasure_id` (docs/architecture.md, "Fixing contacts: merge and erase")."""

    erasure_id = fields.String(required=True)
    contact_id = fields.String(required=True)
    emails = fields.List(fields.String(), required=True, metadata={"description": "the person's addresses"})
    identities = fields.List(fields.Dict(), load_default=list,
                             metadata={"description": "the person's chat identities ({kind, value})"})
    intake_ids = fields.List(fields.String(), load_default=list,
                             metadata={"description": "ingest's ids of the inbound messages on the timeline"})
    erased_by = fields.String(allow_none=True, load_default=None)


class ContactDataErasedV1(Schema):
    """A service's confirmation that it erased what it held of a contact (one per service)."""

    erasure_id = fields.String(required=True)
    contact_id = fields.String(required=True)
    erased = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True,
                         metadata={"description": "what was erased: a count per kind (no personal data)"})
