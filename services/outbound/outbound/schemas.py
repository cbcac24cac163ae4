"""marshmallow schemas of the outbound HTTP API (openapi.py documents the API from them), and of
the relays file (`OUTBOUND_SMTP_RELAYS_FILE`, read by settings.py).

Recipients are given as `"ada@example.com"` or `{"email": "ada@example.com", "name": "Ada"}`;
the handlers validate each one (addresses, CR/LF/NUL, encoded words) and say which is wrong.
"""

from marshmallow import Schema, fields, validate

from mailroom_shared import config
from outbound.domain.auto_ack import MAX_PERIOD_HOURS
from outbound.domain.body import INSERT_KINDS
from outbound.domain.scopes import SCOPES

_RECIPIENT = {"description": "\"a@b\" or {email, name}"}


class AttachmentInputSchema(Schema):
    filename = fields.String(required=True)
    content_type = fields.String(load_default="application/octet-stream")
    content_base64 = fields.String(required=True)
    inline = fields.Boolean(load_default=False, metadata={"description": "an inline image, referenced as cid:"})
    content_id = fields.String(allow_none=True, load_default=None)


class InsertSchema(Schema):
    kind = fields.String(load_default="link",
                         validate=validate.OneOf(INSERT_KINDS))
    url = fields.String(required=True)
    title = fields.String(allow_none=True, load_default=None)


class _SendSchema(Schema):
    from_ = fields.Raw(data_key="from", attribute="from", allow_none=True, load_default=None,
                       metadata={"description": "one of the inbox's channel addresses"})
    cc = fields.List(fields.Raw(metadata=_RECIPIENT), allow_none=True, load_default=None)
    bcc = fields.List(fields.Raw(metadata=_RECIPIENT), allow_none=True, load_default=None)
    subject = fields.String(allow_none=True, load_default=None)
    html = fields.String(allow_none=True, load_default=None, metadata={"description": "sanitised on send"})
    text = fields.String(allow_none=True, load_default=None,
                         metadata={"description": "derived from html when not given"})
    template_id = fields.String(allow_none=True, load_default=None,
                                metadata={"description": "fills subject/html/text not given, with tokens"})
    inserts = fields.List(fields.Nested(InsertSchema), load_default=list)
    attachments = fields.List(fields.Nested(AttachmentInputSchema), load_default=list)


class ComposeSchema(_SendSchema):
    to = fields.List(fields.Raw(metadata=_RECIPIENT), required=True)


class ReplySchema(_SendSchema):
    message_id = fields.String(allow_none=True, load_default=None,
                               metadata={"description": "the message replied to (default: the latest "
                                                        "inbound message)"})
    to = fields.List(fields.Raw(metadata=_RECIPIENT), allow_none=True, load_default=None,
                     metadata={"description": "replaces the default To (the sender of the message replied to)"})
    add_to = fields.List(fields.Raw(metadata=_RECIPIENT), load_default=list,
                         metadata={"description": "added to the default To"})
    reply_all = fields.Boolean(load_default=False,
                               metadata={"description": "CC the other To/CC recipients of the message replied to"})


class ForwardSchema(_SendSchema):
    to = fields.List(fields.Raw(metadata=_RECIPIENT), required=True,
                     metadata={"description": "another inbox's address or any address"})
    message_id = fields.String(allow_none=True, load_default=None,
                               metadata={"description": "forward this message (default: the whole conversation)"})
    mode = fields.String(load_default="quote", validate=validate.OneOf(["quote", "attach"]),
                         metadata={"description": "quote the original(s) below the note, or attach them "
                                                  "as message/rfc822"})


class OutboundAddressSchema(Schema):
    name = fields.String(allow_none=True)
    email = fields.String()


class OutboundAttachmentSchema(Schema):
    id = fields.String()
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    sha256 = fields.String()
    disposition = fields.String()
    content_id = fields.String(allow_none=True)
    url = fields.String()


class DeliveryAttemptSchema(Schema):
    attempt = fields.Integer()
    started_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    outcome = fields.String(allow_none=True, metadata={"description": "sent | temporary | permanent; "
                                                                      "null: the worker stopped mid-send"})
    smtp_code = fields.Integer(allow_none=True)
    response = fields.String(allow_none=True)


class BouncedRecipientSchema(Schema):
    email = fields.String()
    status = fields.String(allow_none=True, metadata={"description": "DSN status, e.g. 5.1.1"})
    reason = fields.String(allow_none=True)
    suppressed = fields.Boolean(metadata={"description": "a hard bounce: now on the inbox's suppression list"})


class EmailSchema(Schema):
    id = fields.String()
    kind = fields.String(metadata={"enum": ["compose", "reply", "forward"]})
    state = fields.String(metadata={"enum": ["queued", "deferred", "sent", "failed", "bounced"]})
    inbox_id = fields.String()
    conversation_id = fields.String()
    replied_message_id = fields.String(allow_none=True)
    message_id = fields.String(metadata={"description": "Message-ID header, without angle brackets"})
    from_ = fields.Nested(OutboundAddressSchema, data_key="from")
    to = fields.List(fields.Nested(OutboundAddressSchema))
    cc = fields.List(fields.Nested(OutboundAddressSchema))
    bcc = fields.List(fields.Nested(OutboundAddressSchema))
    reply_to = fields.List(fields.Nested(OutboundAddressSchema))
    subject = fields.String()
    text = fields.String(allow_none=True)
    html = fields.String(allow_none=True)
    in_reply_to = fields.List(fields.String())
    references = fields.List(fields.String())
    attachments = fields.List(fields.Nested(OutboundAttachmentSchema))
    attempts = fields.Integer()
    next_attempt_at = fields.DateTime(allow_none=True)
    last_error = fields.String(allow_none=True, metadata={"description": "why the last attempt failed"})
    smtp_queue_id = fields.String(allow_none=True)
    refused_recipients = fields.List(fields.String())
    bounce_reason = fields.String(allow_none=True)
    bounced_recipients = fields.List(fields.Nested(BouncedRecipientSchema), metadata={
        "description": "recipients DSNs returned the email for; `state` is bounced only when every one did"})
    created_at = fields.DateTime()
    sent_at = fields.DateTime(allow_none=True)
    failed_at = fields.DateTime(allow_none=True)
    bounced_at = fields.DateTime(allow_none=True)
    delivery_attempts = fields.List(fields.Nested(DeliveryAttemptSchema))


class SuppressionSchema(Schema):
    address = fields.String(metadata={"description": "lower-case, domain in IDNA ASCII"})
    inbox_id = fields.String()
    source = fields.String(metadata={"enum": ["smtp", "dsn"], "description": "a 5xx to RCPT TO, or a DSN"})
    status = fields.String(allow_none=True, metadata={"description": "550, 5.1.1 …"})
    reason = fields.String()
    email_id = fields.String(allow_none=True, metadata={"description": "the email that bounced (the last one)"})
    bounce_intake_id = fields.String(allow_none=True, metadata={"description": "ingest's id of the DSN"})
    bounces = fields.Integer(metadata={"description": "hard bounces recorded for it"})
    created_at = fields.DateTime()
    last_bounced_at = fields.DateTime()
    lifted_at = fields.DateTime(allow_none=True)
    lifted_by = fields.String(allow_none=True)


class AutoAcknowledgementSchema(Schema):
    enabled = fields.Boolean(required=True)
    subject = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=998), metadata={
        "description": "template; default: Re: <the conversation's subject>"})
    html = fields.String(allow_none=True, load_default=None, metadata={"description": "template (sanitised)"})
    text = fields.String(allow_none=True, load_default=None, metadata={"description": "template"})
    period_hours = fields.Integer(load_default=24, validate=validate.Range(min=1, max=MAX_PERIOD_HOURS),
                                  metadata={"description": "at most one acknowledgement per sender in this period"})
    updated_by = fields.String(dump_only=True, allow_none=True)
    updated_at = fields.DateTime(dump_only=True, allow_none=True)


class SuppressionListSchema(Schema):
    items = fields.List(fields.Nested(SuppressionSchema))
    next_cursor = fields.String(allow_none=True)


class EmailListSchema(Schema):
    items = fields.List(fields.Nested(EmailSchema))
    next_cursor = fields.String(allow_none=True)


class ReplyDefaultsSchema(Schema):
    to = fields.List(fields.Nested(OutboundAddressSchema))
    cc = fields.List(fields.Nested(OutboundAddressSchema))
    from_ = fields.Nested(OutboundAddressSchema, data_key="from")
    subject = fields.String()
    message_id = fields.String()
    identities = fields.List(fields.Nested(OutboundAddressSchema), metadata={"description": "From addresses to choose"})


_SCOPE = {"description": "account: everyone sees it, super admins manage it; inbox: those who may view "
                         "`inbox_id` see it, its members manage it; personal: yours only. Default: inbox when "
                         "`inbox_id` is given, else account"}
_INBOX_ID = {"description": "scope inbox: the inbox it belongs to; otherwise the inbox it is offered in "
                            "(null: every inbox)"}


class TemplateInputSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    scope = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(SCOPES),
                          metadata=_SCOPE)
    inbox_id = fields.String(allow_none=True, load_default=None, metadata=_INBOX_ID)
    subject = fields.String(allow_none=True, load_default=None)
    html = fields.String(allow_none=True, load_default=None)
    text = fields.String(allow_none=True, load_default=None)
    on_missing = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(["error", "empty"]),
                               metadata={"description": "a missing token: an error, or empty (default: "
                                                        "OUTBOUND_TEMPLATE_MISSING)"})


class TemplateUpdateSchema(TemplateInputSchema):
    name = fields.String(validate=validate.Length(min=1, max=200))


class SnippetInputSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    shortcut = fields.String(allow_none=True, load_default=None, validate=validate.Regexp(r"^[a-z0-9_-]{1,64}$"),
                             metadata={"description": "unique among the snippets of the same owner (the "
                                                      "account, an inbox or a user)"})
    scope = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(SCOPES),
                          metadata=_SCOPE)
    inbox_id = fields.String(allow_none=True, load_default=None, metadata=_INBOX_ID)
    html = fields.String(allow_none=True, load_default=None)
    text = fields.String(allow_none=True, load_default=None)
    on_missing = fields.String(allow_none=True, load_default=None, validate=validate.OneOf(["error", "empty"]))


class SnippetUpdateSchema(SnippetInputSchema):
    name = fields.String(validate=validate.Length(min=1, max=200))


class TemplateSchema(Schema):
    id = fields.String()
    name = fields.String()
    scope = fields.String(metadata={"enum": list(SCOPES)})
    inbox_id = fields.String(allow_none=True)
    owner_user_id = fields.String(allow_none=True, metadata={"description": "scope personal: its owner"})
    subject = fields.String(allow_none=True)
    html = fields.String(allow_none=True)
    text = fields.String(allow_none=True)
    on_missing = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class SnippetSchema(TemplateSchema):
    shortcut = fields.String(allow_none=True)

    class Meta:
        exclude = ("subject",)


class TemplateListSchema(Schema):
    items = fields.List(fields.Nested(TemplateSchema))
    next_cursor = fields.String(allow_none=True)


class SnippetListSchema(Schema):
    items = fields.List(fields.Nested(SnippetSchema))
    next_cursor = fields.String(allow_none=True)


class RenderInputSchema(Schema):
    conversation_id = fields.String(allow_none=True, load_default=None,
                                    metadata={"description": "tokens from this conversation and its contact"})
    inbox_id = fields.String(allow_none=True, load_default=None)
    contact = fields.Nested(OutboundAddressSchema, allow_none=True, load_default=None,
                            metadata={"description": "overrides the conversation's contact"})


class RenderedSchema(Schema):
    subject = fields.String(allow_none=True)
    html = fields.String(allow_none=True)
    text = fields.String(allow_none=True)


# --- the relays file (settings.py) -----------------------------------------------------------------

class RelaySchema(Schema):
    """One per-From relay. The password is never in the file: `password_env` names the
    environment variable that holds it."""

    from_ = fields.String(data_key="from", attribute="from", required=True, validate=validate.Length(min=1))
    host = fields.String(required=True, validate=validate.Length(min=1))
    port = fields.Integer(validate=validate.Range(min=1, max=65535))
    starttls = fields.Boolean(load_default=False)
    ssl = fields.Boolean(load_default=False)
    username = fields.String(allow_none=True, load_default=None)
    password_env = fields.String(allow_none=True, load_default=None)
    timeout = fields.Float(validate=validate.Range(min=0, min_inclusive=False))

    no_password = config.secrets_by_reference("relays")


class RelaysFileSchema(Schema):
    relays = fields.List(fields.Nested(RelaySchema), allow_none=True, load_default=list)
