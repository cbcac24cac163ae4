"""Events published by the ingest service (exchange `ingest.events`)."""

from marshmallow import Schema, fields, validate

from mailroom_shared.events.common import AddressSchema, AttachmentRefSchema
from mailroom_shared.events.contacts import ContactDataErasedV1


class FlagsSchema(Schema):
    auto_submitted = fields.Boolean(required=True)
    bounce = fields.Boolean(required=True)
    spam = fields.Boolean(required=True)
    loop = fields.Boolean(required=True)
    reasons = fields.List(fields.String(), load_default=list)


class ForwardAuthenticationSchema(Schema):
    """Whether the forwarder's From was authenticated, and which rule decided."""

    authenticated = fields.Boolean(required=True)
    by = fields.String(allow_none=True, load_default=None, metadata={
        "description": "authentication-results | dkim (verified by ingest) | imap (the team's own mailbox) | "
                       "asserted"})
    authserv_id = fields.String(allow_none=True, load_default=None, metadata={
        "description": "the trusted authserv-id whose Authentication-Results decided"})
    detail = fields.String(allow_none=True, load_default=None, metadata={
        "description": "what passed, e.g. `dmarc=pass header.from=acme.test`"})
    reason = fields.String(allow_none=True, load_default=None, metadata={
        "description": "why the forwarder is not authenticated"})


class ForwardSchema(Schema):
    original_sender = fields.Nested(AddressSchema, required=True)
    original_subject = fields.String(allow_none=True, load_default=None)
    original_date = fields.String(allow_none=True, load_default=None)
    detected_by = fields.String(required=True)
    forwarded_by = fields.Nested(AddressSchema, required=True)
    trusted = fields.Boolean(required=True, metadata={
        "description": "attributed to the original sender: the forwarder is trusted (an inbox member, one of our "
                       "inboxes or an internal domain) and authenticated; else the original sender is metadata"})
    authenticated = fields.Boolean(load_default=False, metadata={
        "description": "the forwarder's From was authenticated (see `authentication`)"})
    authentication = fields.Nested(ForwardAuthenticationSchema, allow_none=True, load_default=None, metadata={
        "description": "which rule decided (absent in events from before it was recorded)"})


class BouncedRecipientSchema(Schema):
    """One recipient a DSN reports on (RFC 3464 per-recipient fields)."""

    email = fields.String(required=True, metadata={"description": "Original-Recipient, else Final-Recipient"})
    action = fields.String(required=True, metadata={"description": "failed | delayed | delivered | relayed | "
                                                                   "expanded (as the DSN says, lower-case)"})
    status = fields.String(required=True, metadata={"description": "e.g. `5.1.1`; 5.x.x with `failed` is a "
                                                                   "hard bounce"})
    diagnostic = fields.String(allow_none=True, load_default=None, metadata={"description": "Diagnostic-Code"})


class MessageReceivedV1(Schema):
    """A message arrived for one inbox channel, was stored raw, parsed and classified."""

    intake_id = fields.String(required=True)
    channel_address = fields.String(required=True, metadata={"description": "the team address it came in on"})
    via = fields.String(required=True, validate=validate.OneOf(["smtp", "imap", "http"]))
    message_id = fields.String(required=True, metadata={"description": "Message-ID, or a stable generated one"})
    subject = fields.String(required=True)
    date = fields.String(allow_none=True, load_default=None)
    sender = fields.Nested(AddressSchema, allow_none=True, load_default=None)
    attributed_to = fields.Nested(AddressSchema, required=True,
                                  metadata={"description": "who the message belongs to (original sender of a "
                                                           "trusted forward, else the sender)"})
    reply_to = fields.List(fields.Nested(AddressSchema), load_default=list)
    to = fields.List(fields.Nested(AddressSchema), load_default=list)
    cc = fields.List(fields.Nested(AddressSchema), load_default=list)
    in_reply_to = fields.List(fields.String(), load_default=list)
    references = fields.List(fields.String(), load_default=list)
    reply_token = fields.String(allow_none=True, load_default=None)
    text = fields.String(allow_none=True, load_default=None)
    html = fields.String(allow_none=True, load_default=None, metadata={"description": "sanitised preview"})
    html_truncated = fields.Boolean(load_default=False)
    remote_images_blocked = fields.Integer(load_default=0)
    size = fields.Integer(required=True)
    raw_url = fields.String(required=True)
    attachments = fields.List(fields.Nested(AttachmentRefSchema), load_default=list)
    flags = fields.Nested(FlagsSchema, required=True)
    forward = fields.Nested(ForwardSchema, allow_none=True, load_default=None)
    received_at = fields.String(required=True)
    bounced_message_ids = fields.List(fields.String(), load_default=list, metadata={
        "description": "for a bounce (DSN): the Message-IDs (without angle brackets) of the returned "
                       "message/rfc822 or text/rfc822-headers parts"})
    bounced_recipients = fields.List(fields.Nested(BouncedRecipientSchema), load_default=list, metadata={
        "description": "for a bounce (DSN): each recipient its message/delivery-status part reports on "
                       "(absent in events from before it was recorded)"})
    return_path = fields.String(allow_none=True, load_default=None, metadata={
        "description": "where automatic replies may go (RFC 3834): the SMTP envelope sender, else the Return-Path "
                       "header; null for a null path (<>), none or a malformed one"})


class DeliveryReportReceivedV1(Schema):
    """A delivery status notification (a bounce) arrived and names the messages it returns: what
    outbound needs to match it to the emails it sent, without the report's text and HTML (its
    message_received, with the same intake_id, carries those to the inbox). Published with that
    message_received, only for one that mailroom_shared.events.delivery_reports.is_delivery_report."""

    intake_id = fields.String(required=True, metadata={"description": "the report's intake id (as in its "
                                                                      "message_received)"})
    raw_url = fields.String(required=True, metadata={"description": "the report's raw message"})
    reason = fields.String(required=True, metadata={
        "description": "what went wrong, in a line of at most 500 characters: the report's first status line "
                       "(`550 5.1.1 …`), else its first line, else its subject"})
    bounced_message_ids = fields.List(fields.String(), required=True, validate=validate.Length(min=1), metadata={
        "description": "the Message-IDs (without angle brackets) of the returned message/rfc822 or "
                       "text/rfc822-headers parts"})
    bounced_recipients = fields.List(fields.Nested(BouncedRecipientSchema), load_default=list, metadata={
        "description": "each recipient its message/delivery-status part reports on; empty when it has none"})


class MessageQuarantinedV1(Schema):
    """Stored raw but not processed: the reason is for an operator. What could be read safely
    from the first header block comes along, so the message still reaches its inbox (marked as
    not displayable, with a link to the raw message)."""

    intake_id = fields.String(required=True)
    channel_address = fields.String(required=True)
    via = fields.String(required=True)
    reason = fields.String(required=True)
    size = fields.Integer(required=True)
    raw_url = fields.String(required=True)
    message_id = fields.String(allow_none=True, load_default=None,
                               metadata={"description": "Message-ID, or the id generated from the bytes"})
    subject = fields.String(allow_none=True, load_default=None)
    sender = fields.Nested(AddressSchema, allow_none=True, load_default=None)
    date = fields.String(allow_none=True, load_default=None)
    in_reply_to = fields.List(fields.String(), load_default=list)
    references = fields.List(fields.String(), load_default=list)
    reply_token = fields.String(allow_none=True, load_default=None)
    spam = fields.Boolean(load_default=False, metadata={"description": "the upstream filter's verdict"})
    received_at = fields.String(allow_none=True, load_default=None)


class MailboxUnreachableV1(Schema):
    mailbox_id = fields.String(required=True)
    error = fields.String(required=True)
    consecutive_failures = fields.Integer(required=True)


class ContactMailErasedV1(ContactDataErasedV1):
    """This service's confirmation of a contact_erased (contacts assembles the erasure report)."""
