"""marshmallow schemas of the conversations HTTP API (openapi.py documents the API from them)."""

import datetime as dt

from marshmallow import Schema, fields, pre_load, validate

from conversations.domain import calls as call_rules
from conversations.domain.access import VISIBILITIES
from conversations.domain.conversation import VIEWS

MAX_CHANNELS = 20
MAX_MEMBERS = 500


# --- inboxes ---------------------------------------------------------------------------------

class ChannelInputSchema(Schema):
    address = fields.String(required=True, validate=validate.Length(min=3, max=320))
    name = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200),
                         metadata={"description": "From display name for replies sent from this address"})
    primary = fields.Boolean(load_default=False)


class MemberSchema(Schema):
    user_id = fields.String(required=True, validate=validate.Length(min=1, max=100))
    email = fields.String(required=True, validate=validate.Length(min=3, max=320))


class AccessInputSchema(Schema):
    visibility = fields.String(validate=validate.OneOf(VISIBILITIES), metadata={
        "description": "everyone in the account, or only the members and the users of `teams`"})
    teams = fields.List(fields.String(validate=validate.Length(min=1, max=100)),
                        validate=validate.Length(max=MAX_MEMBERS),
                        metadata={"description": "team ids (as in the users' tokens) whose users are members"})


class InboxCreateSchema(Schema):
    key = fields.String(allow_none=True, load_default=None,
                        validate=validate.Regexp(r"^[a-z0-9][a-z0-9_-]{0,99}$"),
                        metadata={"description": "optional stable identifier (used by the inboxes file)"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    channels = fields.List(fields.Nested(ChannelInputSchema), required=True,
                           validate=validate.Length(min=1, max=MAX_CHANNELS))
    members = fields.List(fields.Nested(MemberSchema), load_default=list,
                          validate=validate.Length(max=MAX_MEMBERS))
    access = fields.Nested(AccessInputSchema, load_default=None, allow_none=True,
                           metadata={"description": "default: visible to everyone"})


class InboxUpdateSchema(Schema):
    """Fields given replace the inbox's; fields left out stay as they are."""

    name = fields.String(validate=validate.Length(min=1, max=200))
    channels = fields.List(fields.Nested(ChannelInputSchema), validate=validate.Length(min=1, max=MAX_CHANNELS))
    members = fields.List(fields.Nested(MemberSchema), validate=validate.Length(max=MAX_MEMBERS))
    access = fields.Nested(AccessInputSchema)


class InboxFileEntrySchema(InboxCreateSchema):
    """An inbox of the inboxes file (CONVERSATIONS_INBOXES_FILE): a channel may be written as a
    bare address."""

    @pre_load
    def bare_addresses(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(data.get("channels"), list):
            data = {**data, "channels": [{"address": c} if isinstance(c, str) else c for c in data["channels"]]}
        return data


class InboxesFileSchema(Schema):
    inboxes = fields.List(fields.Nested(InboxFileEntrySchema), load_default=list)


class ChannelSchema(Schema):
    address = fields.String()
    name = fields.String(allow_none=True, attribute="display_name")
    primary = fields.Boolean(attribute="is_primary")


class InboxSchema(Schema):
    id = fields.String()
    key = fields.String(allow_none=True)
    name = fields.String()
    primary_address = fields.String(allow_none=True)
    channel_addresses = fields.List(fields.String())
    channels = fields.List(fields.Nested(ChannelSchema))
    members = fields.List(fields.Nested(MemberSchema))
    access = fields.Nested(AccessInputSchema)
    permissions = fields.Nested(lambda: PermissionsSchema(), allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class PermissionsSchema(Schema):
    view = fields.Boolean()
    act = fields.Boolean(metadata={"description": "reply, compose, comment, assign, close, move, forward, "
                                                  "mark spam: members only"})


class InboxListSchema(Schema):
    items = fields.List(fields.Nested(InboxSchema))
    next_cursor = fields.String(allow_none=True)


# --- conversations -----------------------------------------------------------------------------

class ConversationListArgsSchema(Schema):
    view = fields.String(load_default="open", validate=validate.OneOf(VIEWS),
                         metadata={"description": "open and closed hide spam; mine / unassigned: open ones "
                                                  "assigned to you / to nobody; sent: with a message we sent; "
                                                  "all = open + closed; spam = spam only"})
    cursor = fields.String(load_default=None, allow_none=True, metadata={"description": "next_cursor of the "
                                                                                          "previous page"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    q = fields.String(load_default=None, allow_none=True, metadata={
        "description": "search: the conversations whose subject, contact address or name, or one of whose "
                       "messages' text (its first 4,000 characters), sender address or sender name contains this text "
                       "(case-insensitive; "
                       "every character literal, `%` and `_` included); within the view and the inboxes you "
                       "may view, paginated like the view. At most 200 characters (422 beyond); blank: no "
                       "search", "maxLength": 200})


class ContactSchema(Schema):
    email = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    contact_id = fields.String(allow_none=True, metadata={"description": "the contacts service's id, once known"})


class ConversationSummarySchema(Schema):
    id = fields.String()
    inbox_id = fields.String()
    subject = fields.String()
    contact = fields.Nested(ContactSchema)
    status = fields.String(metadata={"enum": ["open", "closed"]})
    spam = fields.Boolean()
    last_message_at = fields.DateTime()
    message_count = fields.Integer()
    snippet = fields.String()
    created_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)
    reopened_from = fields.String(allow_none=True,
                                  metadata={"description": "the closed conversation this one continues"})
    related_conversation_id = fields.String(
        allow_none=True, metadata={"description": "the conversation its first message referred to but could not "
                                                  "join (a sender who is no participant there, or the other spam "
                                                  "verdict), or the one that referred to it but could not adopt it"})
    assignee_user_id = fields.String(allow_none=True)
    assigned_at = fields.DateTime(allow_none=True)
    ticket_id = fields.String(allow_none=True)
    channel_type = fields.String(metadata={"enum": ["email", "chat", "form"],
                                           "description": "what the conversation came in on (docs/channels.md)"})
    channel_kind = fields.String(allow_none=True, metadata={
        "enum": ["whatsapp", "messenger", "livechat", None], "description": "chat only; null for email and form"})
    channel_id = fields.String(allow_none=True, metadata={"description": "the chat or form channel (null: email)"})
    external_thread_id = fields.String(allow_none=True, metadata={
        "description": "chat: the connector's thread (E.164 phone number, PSID, live-chat session)"})
    unread = fields.Boolean(metadata={
        "description": "in lists: unread for you — you marked it unread, or it has an inbound message newer "
                       "than your read mark (or any, if you never read it). Your own state: "
                       "POST /api/conversations/{id}/read and /unread"})


class ConversationPageSchema(Schema):
    items = fields.List(fields.Nested(ConversationSummarySchema))
    next_cursor = fields.String(allow_none=True)


# --- messages ----------------------------------------------------------------------------------

class AddressSchema(Schema):
    name = fields.String(allow_none=True)
    email = fields.String(allow_none=True)


class AttachmentSchema(Schema):
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    sha256 = fields.String()
    disposition = fields.String()
    content_id = fields.String(allow_none=True)
    url = fields.String()
    external = fields.Boolean(metadata={"description": "a chat attachment the connector hosts: a link mailroom "
                                                      "never fetched (treat as remote content)"})


class ForwardAuthenticationSchema(Schema):
    """Why a forward was (not) treated as authenticated: what ingest decided."""

    authenticated = fields.Boolean()
    by = fields.String(allow_none=True, metadata={
        "description": "authentication-results | dkim | imap (the team's own mailbox)"})
    authserv_id = fields.String(allow_none=True)
    detail = fields.String(allow_none=True)
    reason = fields.String(allow_none=True, metadata={"description": "why not, when not"})


class ForwardSchema(Schema):
    forwarded_by = fields.Nested(AddressSchema)
    original_sender = fields.Nested(AddressSchema)
    original_subject = fields.String(allow_none=True)
    original_date = fields.String(allow_none=True)
    detected_by = fields.String()
    trusted = fields.Boolean(metadata={"description": "the forwarder is a member (or an internal domain) and "
                                                      "authenticated: the message is attributed to the original "
                                                      "sender"})
    authenticated = fields.Boolean(allow_none=True, metadata={
        "description": "whether the forwarder was authenticated (Authentication-Results of a trusted MX, DKIM "
                       "verified by ingest, or the team's own mailbox)"})
    authentication = fields.Nested(ForwardAuthenticationSchema, allow_none=True)


class FlagsSchema(Schema):
    auto_submitted = fields.Boolean()
    bounce = fields.Boolean()
    spam = fields.Boolean()
    loop = fields.Boolean()
    reasons = fields.List(fields.String())
    delivery = fields.Dict(metadata={"description": "our email or chat reply: {state: queued|deferred|sent|failed|"
                                                    "bounced, …} as outbound reported it"})
    sender_handle = fields.String(metadata={"description": "a chat message: the sender's handle (E.164, PSID, …)"})
    bounced_recipients = fields.List(fields.Dict(), metadata={
        "description": "our email: recipients a DSN returned it for ({email, status, reason, suppressed})"})


class MessageSchema(Schema):
    """One message in full."""

    id = fields.String()
    conversation_id = fields.String()
    inbox_id = fields.String()
    direction = fields.String(metadata={"enum": ["in", "out"]})
    rfc_message_id = fields.String(metadata={"description": "Message-ID header, without angle brackets"})
    subject = fields.String()
    from_ = fields.Nested(AddressSchema, data_key="from", attribute="sender", allow_none=True)
    attributed_to = fields.Nested(AddressSchema, allow_none=True)
    to = fields.List(fields.Nested(AddressSchema))
    cc = fields.List(fields.Nested(AddressSchema))
    reply_to = fields.List(fields.Nested(AddressSchema))
    snippet = fields.String()
    text = fields.String(allow_none=True)
    html = fields.String(allow_none=True, metadata={"description": "sanitised preview (remote images blocked)"})
    has_html = fields.Function(lambda m: bool(m["html"] if isinstance(m, dict) else m.html),
                               metadata={"type": "boolean"})
    html_truncated = fields.Boolean(metadata={"description": "the preview was cut: see full_message_url"})
    remote_images_blocked = fields.Integer()
    remote_images_loaded = fields.Boolean(metadata={"description": "?images=load: remote images allowed"})
    full_message_url = fields.String(allow_none=True)
    full_message_view_url = fields.String(allow_none=True, metadata={
        "description": "\"View full message\": the whole message as a sanitised page (remote images blocked; "
                       "`&images=1` shows them), signed like full_message_url (the raw .eml); null for our "
                       "own emails, chat and quarantined messages"})
    attachments = fields.List(fields.Nested(AttachmentSchema))
    forward = fields.Nested(ForwardSchema, allow_none=True)
    flags = fields.Nested(FlagsSchema)
    in_reply_to = fields.List(fields.String())
    references = fields.List(fields.String())
    intake_id = fields.String(allow_none=True)
    channel_address = fields.String(allow_none=True)
    size = fields.Integer(allow_none=True)
    date = fields.String(allow_none=True, attribute="date_header")
    received_at = fields.DateTime()
    displayable = fields.Function(
        lambda m: not _quarantined(m), metadata={
            "type": "boolean", "description": "false: ingest could not process this message (quarantined); "
                                              "its headers are shown, the raw message is at full_message_url"})
    quarantine_reason = fields.Function(
        lambda m: _flags(m).get("quarantine_reason") if _quarantined(m) else None,
        metadata={"type": "string", "nullable": True, "description": "why it could not be processed"})


def _flags(message) -> dict:
    return (message.get("flags") if isinstance(message, dict) else message.flags) or {}


def _quarantined(message) -> bool:
    return bool(_flags(message).get("quarantined"))


class ConversationMessageSchema(MessageSchema):
    """A message as listed in its conversation: everything but the HTML preview."""

    class Meta:
        exclude = ("html",)


class ConversationSchema(ConversationSummarySchema):
    """A conversation with its messages, oldest first (HTML previews via /api/messages/{id})."""

    reply_token = fields.String(metadata={"description": "unguessable; replies to reply_address thread here"})
    reply_address = fields.String(allow_none=True,
                                  metadata={"description": "the primary channel plus-addressed with the token"})
    messages = fields.List(fields.Nested(ConversationMessageSchema))
    comments = fields.List(fields.Nested(lambda: CommentSchema()))
    ticket = fields.Nested(lambda: TicketSchema(), allow_none=True)
    permissions = fields.Nested(PermissionsSchema)
    calls = fields.List(fields.Nested(lambda: CallSchema()), metadata={"description": "calls logged, oldest first"})
    contact_phone = fields.String(allow_none=True, metadata={
        "description": "the contact's number (E.164): of the latest call on any of its conversations, else its "
                       "WhatsApp number"})
    contact_tel_url = fields.String(allow_none=True, metadata={"description": "tel:+… of contact_phone"})
    inbox_ids = fields.List(fields.String(), metadata={
        "description": "the inboxes the conversation is in: its home inbox (inbox_id) first, then those it is "
                       "shared into (the same email reached them too; docs/architecture.md)"})


# --- actions -----------------------------------------------------------------------------------

class AssignSchema(Schema):
    assignee_user_id = fields.String(required=True, allow_none=True, validate=validate.Length(min=1, max=100),
                                     metadata={"description": "a member of the inbox; null unassigns"})
    expected_assignee_user_id = fields.String(
        allow_none=True, metadata={"description": "optional compare-and-set: the assignee you saw (null: "
                                                  "unassigned). If it changed meanwhile: 409, nothing changes"})


class CommentCreateSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=20_000),
                         metadata={"description": "plain text; @user-id or @email of members mention them"})
    mentions = fields.List(fields.String(validate=validate.Length(min=1, max=100)), load_default=list,
                           validate=validate.Length(max=50))


class CommentSchema(Schema):
    id = fields.String()
    conversation_id = fields.String()
    author_user_id = fields.String()
    author_email = fields.String(allow_none=True)
    body = fields.String()
    mentions = fields.List(fields.String())
    created_at = fields.DateTime()


class CloseSchema(Schema):
    close_ticket = fields.Boolean(load_default=False,
                                  metadata={"description": "also close the associated ticket (default: only "
                                                           "the conversation)"})


class TicketInputSchema(Schema):
    ticket_id = fields.String(load_default=None, allow_none=True,
                              metadata={"description": "associate this existing ticket; omitted: create one"})
    subject = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=500),
                            metadata={"description": "of a new ticket (default: the conversation's)"})


class TicketSchema(Schema):
    id = fields.String()
    subject = fields.String()
    status = fields.String(metadata={"enum": ["open", "closed"]})
    created_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)


class MoveSchema(Schema):
    inbox_id = fields.String(required=True, metadata={"description": "the inbox to move to (you must be a member)"})


class UnreadCountsSchema(Schema):
    """How many conversations of each view are unread for you."""

    open = fields.Integer()
    closed = fields.Integer()
    mine = fields.Integer()
    unassigned = fields.Integer()
    sent = fields.Integer()
    spam = fields.Integer()
    all = fields.Integer()


class ViewCountsSchema(Schema):
    open = fields.Integer()
    closed = fields.Integer()
    mine = fields.Integer()
    unassigned = fields.Integer()
    sent = fields.Integer()
    spam = fields.Integer()
    all = fields.Integer()
    unread_counts = fields.Nested(UnreadCountsSchema, metadata={
        "description": "per view, how many of its conversations are unread for you (see `unread` on a "
                       "conversation)"})


class MessageArgsSchema(Schema):
    images = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(["load"]),
                           metadata={"description": "load: re-sanitise from the raw message with remote images"})


class SentPageSchema(Schema):
    """The inbox's Sent view: our messages, newest first, each with its delivery state."""

    items = fields.List(fields.Dict())
    next_cursor = fields.String(allow_none=True)


class AttributionSchema(Schema):
    """Whom an inbound message belongs to (`PUT …/messages/{id}/attribution`)."""

    email = fields.String(required=True, validate=validate.Length(min=3, max=320))
    name = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=320))


class AttributionResultSchema(Schema):
    message_id = fields.String()
    attributed_to = fields.Dict()
    previous = fields.Dict(allow_none=True)
    changed = fields.Boolean()


# --- chat and form channels (docs/channels.md) ------------------------------------------------

class ConnectorChannelCreateSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(["chat", "form"]))
    kind = fields.String(allow_none=True, load_default=None,
                         validate=validate.OneOf(["whatsapp", "messenger", "livechat"]),
                         metadata={"description": "chat: whatsapp, messenger or livechat; form: none"})
    name = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200))
    webhook_url = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=2000),
                                metadata={"description": "chat: where mailroom POSTs replies (signed); public "
                                                         "addresses only unless MAILROOM_CONNECTOR_ALLOW_PRIVATE_"
                                                         "TARGETS"})


class ConnectorChannelSchema(Schema):
    id = fields.String()
    inbox_id = fields.String()
    type = fields.String(metadata={"enum": ["chat", "form"]})
    kind = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    webhook_url = fields.String(allow_none=True)
    messages_url = fields.String(metadata={"description": "chat: POST signed messages here"})
    submissions_url = fields.String(metadata={"description": "form: POST signed submissions here"})
    created_at = fields.DateTime()
    secret = fields.String(metadata={"description": "whsec_…: only in the answer that creates the channel"})


class ConnectorChannelListSchema(Schema):
    items = fields.List(fields.Nested(ConnectorChannelSchema))
    next_cursor = fields.String(allow_none=True)


class ConnectorAttachmentSchema(Schema):
    filename = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=1000))
    content_type = fields.String(allow_none=True, load_default=None,
                                 validate=validate.Regexp(r"^[\w.+-]{1,63}/[\w.+-]{1,63}$"))
    url = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=2000),
                        metadata={"description": "a file the connector hosts: stored as a link, never fetched"})
    size = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=0))
    content_base64 = fields.String(allow_none=True, load_default=None,
                                   metadata={"description": "the file inline (up to 5 MiB decoded, 6 MiB in all)"})


class ChatSenderSchema(Schema):
    handle = fields.String(required=True, validate=validate.Length(min=1, max=200),
                           metadata={"description": "phone number (whatsapp), PSID (messenger), visitor id (livechat)"})
    name = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200))


class ChatMessageInputSchema(Schema):
    """What a chat connector POSTs to /api/channels/{channel_id}/messages (signed)."""

    message_id = fields.String(required=True, validate=validate.Length(min=1, max=200),
                               metadata={"description": "the connector's message id: the same id twice is "
                                                        "stored once"})
    thread_id = fields.String(required=True, validate=validate.Length(min=1, max=200),
                              metadata={"description": "phone number (E.164 or international digits), PSID, "
                                                       "or live-chat session id"})
    sender = fields.Nested(ChatSenderSchema, required=True)
    text = fields.String(load_default="", validate=validate.Length(max=64 * 1024),
                         metadata={"description": "plain text (never rendered as HTML)"})
    attachments = fields.List(fields.Nested(ConnectorAttachmentSchema), load_default=list)


class FormSubmissionInputSchema(Schema):
    """What a form connector POSTs to /api/channels/{channel_id}/submissions (signed)."""

    submission_id = fields.String(required=True, validate=validate.Length(min=1, max=200),
                                  metadata={"description": "the connector's id: the same id twice is stored once"})
    email = fields.String(required=True, validate=validate.Length(min=3, max=320),
                          metadata={"description": "the submitter's address: replies go there by email"})
    name = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200))
    subject = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=500))
    fields_ = fields.Dict(keys=fields.String(), required=True, data_key="fields",
                          metadata={"description": "label → value, in order (strings, numbers, booleans, lists)"})
    attachments = fields.List(fields.Nested(ConnectorAttachmentSchema), load_default=list)


class ConnectorMessageAcceptedSchema(Schema):
    message_id = fields.String(metadata={"description": "our id of the stored message"})
    conversation_id = fields.String()
    external_message_id = fields.String()


# --- calls (docs/calls.md) ----------------------------------------------------------------------

class CallCreateSchema(Schema):
    """A call to log (POST /api/conversations/{id}/calls); header `Idempotency-Key` logs it once."""

    direction = fields.String(required=True, validate=validate.OneOf(call_rules.DIRECTIONS))
    phone_number = fields.String(required=True, validate=validate.Length(min=1, max=call_rules.MAX_PHONE_CHARS),
                                 metadata={"description": "any human format; stored in E.164 (without +country "
                                                          "only with CONVERSATIONS_DEFAULT_PHONE_REGION)"})
    outcome = fields.String(required=True, validate=validate.OneOf(call_rules.OUTCOMES))
    duration_seconds = fields.Integer(load_default=0, strict=True,
                                      validate=validate.Range(min=0, max=call_rules.MAX_DURATION_SECONDS))
    notes = fields.String(load_default=None, allow_none=True,
                          validate=validate.Length(max=call_rules.MAX_NOTES_CHARS),
                          metadata={"description": "plain text, never rendered as HTML"})
    recording_url = fields.String(load_default=None, allow_none=True,
                                  validate=validate.Length(max=call_rules.MAX_RECORDING_URL_CHARS),
                                  metadata={"description": "https only, no user or password in it"})
    called_at = fields.AwareDateTime(load_default=None, allow_none=True, default_timezone=dt.UTC, metadata={
        "description": "ISO 8601 (default: now; without a zone: UTC); not in the future"})


class CallSchema(Schema):
    id = fields.String()
    conversation_id = fields.String()
    direction = fields.String(metadata={"enum": list(call_rules.DIRECTIONS)})
    phone_number = fields.String(metadata={"description": "E.164"})
    outcome = fields.String(metadata={"enum": list(call_rules.OUTCOMES)})
    duration_seconds = fields.Integer()
    notes = fields.String(allow_none=True)
    recording_url = fields.String(allow_none=True)
    logged_by = fields.String(metadata={"description": "the user id of the member who logged it"})
    called_at = fields.DateTime()
    created_at = fields.DateTime()


class CallListSchema(Schema):
    items = fields.List(fields.Nested(CallSchema))
    next_cursor = fields.String(allow_none=True)
