"""marshmallow shapes of ingest: the HTTP answers (openapi.py documents the API from them) and the
IMAP mailboxes file (`INGEST_MAILBOXES_FILE`, read by settings.py)."""

from marshmallow import Schema, fields, validate

from mailroom_shared import config


class AcceptedSchema(Schema):
    intake_ids = fields.List(fields.String())
    duplicate = fields.Boolean()


class IntakeSchema(Schema):
    id = fields.String()
    channel_address = fields.String()
    via = fields.String()
    status = fields.String(metadata={"description": "stored | processed | quarantined"})
    reason = fields.String(allow_none=True)
    size = fields.Integer()
    received_at = fields.DateTime()
    raw_url = fields.String()


class QuarantinedSchema(IntakeSchema):
    attempts = fields.Integer()
    processed_at = fields.DateTime(allow_none=True, metadata={"description": "when it was quarantined"})


class QuarantinedPageSchema(Schema):
    items = fields.List(fields.Nested(QuarantinedSchema))
    next_cursor = fields.String(allow_none=True)


class RetryRequestSchema(Schema):
    intake_ids = fields.List(fields.String(), load_default=None,
                             metadata={"description": "these quarantined messages; omit for all"})
    reason_contains = fields.String(load_default=None,
                                    metadata={"description": "only those whose reason contains this"})


class RetriedSchema(Schema):
    intake_ids = fields.List(fields.String(), metadata={"description": "taken back for processing"})


# --- the mailboxes file (settings.py) ----------------------------------------------------------------

_NOT_EMPTY = validate.Length(min=1)


class MailboxSchema(Schema):
    """One IMAP mailbox polled into an inbox channel. The password is never in the file:
    `password_env` names the environment variable that holds it."""

    id = fields.String(required=True, validate=_NOT_EMPTY)
    host = fields.String(required=True, validate=_NOT_EMPTY)
    port = fields.Integer(load_default=993, validate=validate.Range(min=1, max=65535))
    username = fields.String(required=True, validate=_NOT_EMPTY)
    password_env = fields.String(required=True, validate=_NOT_EMPTY)
    channel_address = fields.String(required=True, validate=_NOT_EMPTY)
    ssl = fields.Boolean(load_default=True)  # IMAPS (implicit TLS)
    starttls = fields.Boolean(load_default=False)  # plain connection upgraded; needs ssl: false
    mark_seen = fields.Boolean(load_default=False)
    delete_after_fetch = fields.Boolean(load_default=False)
    # the team's own mailbox (the default: a configured mailbox is the team's): forwards fetched
    # from it count as authenticated; false for a mailbox that others fill (forwards from it need
    # Authentication-Results or DKIM, as over SMTP)
    team_mailbox = fields.Boolean(load_default=True)

    no_password = config.secrets_by_reference("mailboxes")
