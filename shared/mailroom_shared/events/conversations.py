"""Events published by the conversations service (exchange `conversations.events`)."""

from marshmallow import Schema, fields

from mailroom_shared.events.common import AddressSchema
from mailroom_shared.events.contacts import ContactDataErasedV1


class InboxUpdatedV1(Schema):
    """An inbox was created or changed: other services keep the addresses they need."""

    inbox_id = fields.String(required=True)
    name = fields.String(required=True)
    channel_addresses = fields.List(fields.String(), required=True)
    member_emails = fields.List(fields.String(), load_default=list,
                                metadata={"description": "trusted forwarders"})
    primary_address = fields.String(allow_none=True, load_default=None,
                                    metadata={"description": "the default From identity"})
    visibility = fields.String(load_default="everyone", metadata={
        "description": "'everyone' in the account, or 'specific' users (member_user_ids) and teams (team_ids)"})
    member_user_ids = fields.List(fields.String(), load_default=list)
    team_ids = fields.List(fields.String(), load_default=list)


class ConversationCreatedV1(Schema):
    conversation_id = fields.String(required=True)
    inbox_id = fields.String(required=True)
    subject = fields.String(required=True)
    contact_email = fields.String(allow_none=True, load_default=None)
    contact_name = fields.String(allow_none=True, load_default=None)
    status = fields.String(required=True)
    spam = fields.Boolean(required=True)
    reopened_from = fields.String(allow_none=True, load_default=None)
    related_conversation_id = fields.String(allow_none=True, load_default=None, metadata={
        "description": "the conversation this message referred to (reply token, In-Reply-To, References) but "
                       "could not join: its sender is no participant there, or it has the other spam verdict; "
                       "or the conversation that refers to this message but may not adopt it"})
    channel_type = fields.String(metadata={
        "enum": ["email", "chat", "form"], "description": "what it came in on (docs/channels.md); absent: email"})
    channel_kind = fields.String(allow_none=True, metadata={"description": "chat: whatsapp, messenger or livechat; "
                                                                            "absent for email"})


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
    ticket_id = fields.String(allow_none=True, load_default=None, metadata={"description": "associated ticket"})
    ticket_closed = fields.Boolean(load_default=False,
                                   metadata={"description": "the associated ticket was closed with it"})


class ConversationAssignedV1(Schema):
    """Assigned, reassigned or unassigned (assignee_user_id null)."""

    conversation_id = fields.String(required=True)
    inbox_id = fields.String(required=True)
    assignee_user_id = fields.String(allow_none=True, required=True)
    previous_assignee_user_id = fields.String(allow_none=True, load_default=None)
    assigned_by = fields.String(allow_none=True, load_default=None,
                                metadata={"description": "user id; null when the system unassigned (e.g. a move)"})


class CommentAddedV1(Schema):
    """An internal note: never emailed to the contact."""

    comment_id = fields.String(required=True)
    conversation_id = fields.String(required=True)
    inbox_id = fields.String(required=True)
    author_user_id = fields.String(required=True)
    body = fields.String(required=True, metadata={"description": "plain text"})
    mentions = fields.List(fields.String(), load_default=list, metadata={"description": "mentioned user ids"})


class TicketAssociatedV1(Schema):
    ticket_id = fields.String(required=True)
    conversation_id = fields.String(required=True)
    inbox_id = fields.String(required=True)
    subject = fields.String(required=True)
    status = fields.String(required=True)
    created = fields.Boolean(required=True, metadata={"description": "the ticket was created by this action"})
    associated_by = fields.String(allow_none=True, load_default=None)


class TicketClosedV1(Schema):
    ticket_id = fields.String(required=True)
    conversation_id = fields.String(allow_none=True, load_default=None,
                                    metadata={"description": "the conversation closed with it"})
    closed_by = fields.String(allow_none=True, load_default=None)


class ConversationMovedV1(Schema):
    """Moved to another inbox: history kept; later replies go out from the new inbox's addresses."""

    conversation_id = fields.String(required=True)
    from_inbox_id = fields.String(required=True)
    to_inbox_id = fields.String(required=True)
    inbox_id = fields.String(required=True, metadata={"description": "= to_inbox_id"})
    moved_by = fields.String(allow_none=True, load_default=None)
    unassigned = fields.Boolean(load_default=False,
                                metadata={"description": "the assignee is no member of the new inbox"})


class ConversationSpamMarkedV1(Schema):
    """marked spam (spam true) or not spam (spam false). For 'not spam', the contact that was
    held back (contacts skip spam senders) is in contact_email/contact_name and the messages'
    intake ids are listed, so contacts can create it and log the timeline."""

    conversation_id = fields.String(required=True)
    inbox_id = fields.String(required=True)
    spam = fields.Boolean(required=True)
    marked_by = fields.String(allow_none=True, load_default=None)
    contact_email = fields.String(allow_none=True, load_default=None)
    contact_name = fields.String(allow_none=True, load_default=None)
    intake_ids = fields.List(fields.String(), load_default=list)


class ConversationSharedV1(Schema):
    """One email sent to several of our inboxes is one conversation: its copy for another inbox
    added that inbox to the conversation's inboxes instead of being stored again
    (docs/architecture.md, "One email to several team inboxes")."""

    conversation_id = fields.String(required=True)
    inbox_id = fields.String(required=True, metadata={"description": "the inbox it is now shared into"})
    home_inbox_id = fields.String(required=True, metadata={"description": "the conversation's home inbox"})
    inbox_ids = fields.List(fields.String(), required=True,
                            metadata={"description": "every inbox it is in now, the home inbox first"})
    message_id = fields.String(required=True, metadata={"description": "our id of the stored message (the first copy)"})
    rfc_message_id = fields.String(required=True)
    intake_id = fields.String(allow_none=True, load_default=None,
                              metadata={"description": "ingest's id of this copy (not stored again)"})
    sender = fields.Nested(AddressSchema, allow_none=True, load_default=None)
    subject = fields.String(required=True)
    spam = fields.Boolean(load_default=False)


class MessageAttributionCorrectedV1(Schema):
    """A teammate changed whom an inbound message belongs to (e.g. a forward attributed to the
    wrong person). contacts moves the timeline entry; the previous attribution is kept here."""

    conversation_id = fields.String(required=True)
    inbox_id = fields.String(required=True)
    message_id = fields.String(required=True)
    rfc_message_id = fields.String(required=True)
    intake_id = fields.String(allow_none=True, load_default=None)
    previous = fields.Nested(AddressSchema, allow_none=True, load_default=None)
    attributed_to = fields.Nested(AddressSchema, required=True)
    corrected_by = fields.String(required=True)


class ChannelIdentitySchema(Schema):
    kind = fields.String(required=True, metadata={"enum": ["phone", "messenger", "livechat"]})
    value = fields.String(required=True, metadata={"description": "normalised: E.164 for phone numbers"})


class ChannelMessageReceivedV1(Schema):
    """A chat message or form submission from a connector was stored (docs/channels.md); contacts
    resolves its sender (by identity for chat, by email for forms) and logs it on the timeline."""

    conversation_id = fields.String(required=True)
    inbox_id = fields.String(required=True)
    message_id = fields.String(required=True, metadata={"description": "our id of the stored message"})
    rfc_message_id = fields.String(required=True, metadata={"description": "the message's key in its inbox"})
    channel_id = fields.String(required=True)
    channel_type = fields.String(required=True, metadata={"enum": ["chat", "form"]})
    channel_kind = fields.String(allow_none=True, load_default=None,
                                 metadata={"enum": ["whatsapp", "messenger", "livechat", None]})
    identity = fields.Nested(ChannelIdentitySchema, allow_none=True, load_default=None,
                             metadata={"description": "chat: the sender's handle"})
    email = fields.String(allow_none=True, load_default=None, metadata={"description": "form: the submitter"})
    name = fields.String(allow_none=True, load_default=None)
    channel_label = fields.String(allow_none=True, load_default=None,
                                  metadata={"description": "e.g. phone:+4915112345678, or the submitter's email"})
    subject = fields.String(required=True)
    snippet = fields.String(required=True)
    attachments = fields.List(fields.Dict(), load_default=list)
    received_at = fields.String(required=True)


class ContactMessagesErasedV1(ContactDataErasedV1):
    """This service's confirmation of a contact_erased (contacts assembles the erasure report)."""


class CallLoggedV1(Schema):
    """A member logged a call on a conversation (docs/calls.md); contacts puts it on the contact's
    timeline (kind `call`) and keeps the number as the contact's phone identity."""

    call_id = fields.String(required=True)
    conversation_id = fields.String(required=True)
    inbox_id = fields.String(required=True)
    contact_id = fields.String(allow_none=True, load_default=None,
                               metadata={"description": "the conversation's contact, when conversations knows it"})
    contact_email = fields.String(allow_none=True, load_default=None)
    contact_name = fields.String(allow_none=True, load_default=None)
    direction = fields.String(required=True, metadata={"enum": ["inbound", "outbound"]})
    phone_number = fields.String(required=True, metadata={"description": "the contact's number, E.164"})
    outcome = fields.String(required=True, metadata={"enum": ["answered", "no_answer", "busy", "voicemail", "failed"]})
    duration_seconds = fields.Integer(required=True)
    notes = fields.String(allow_none=True, load_default=None, metadata={"description": "plain text, ≤ 10,000 chars"})
    recording_url = fields.String(allow_none=True, load_default=None, metadata={"description": "https"})
    logged_by = fields.String(required=True, metadata={"description": "the user id of the member who logged it"})
    logged_by_email = fields.String(allow_none=True, load_default=None)
    called_at = fields.String(required=True, metadata={"description": "ISO 8601"})
    created_at = fields.String(required=True, metadata={"description": "ISO 8601: when it was logged"})
