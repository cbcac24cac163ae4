"""marshmallow shapes of the notifier's HTTP bodies."""

from marshmallow import EXCLUDE, Schema, fields, validate


class WebhookBody(Schema):
    """POST /api/webhooks (every field) and PATCH /api/webhooks/{id} (partial: only the fields given change)."""

    class Meta:
        unknown = EXCLUDE

    url = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    events = fields.List(fields.String(validate=validate.Length(min=1, max=64)), required=True,
                         validate=validate.Length(min=1, max=100))
    inbox_ids = fields.List(fields.String(validate=validate.Length(min=1, max=64)), allow_none=True,
                            validate=validate.Length(max=500))
    description = fields.String(allow_none=True, validate=validate.Length(max=500))
    enabled = fields.Boolean()


WEBHOOK_CREATE = WebhookBody()
WEBHOOK_UPDATE = WebhookBody(partial=True)

_SLACK_ID = validate.Regexp(r"^[A-Z0-9]{2,64}$", error="a Slack id such as C0123ABCDEF")


class SlackConnectionBody(Schema):
    """POST /api/slack/connections (inbox_id, channel_id, bot_token, signing_secret required) and
    PATCH /api/slack/connections/{id} (partial; inbox_id and channel_id cannot change)."""

    class Meta:
        unknown = EXCLUDE

    inbox_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    channel_id = fields.String(required=True, validate=_SLACK_ID)
    bot_token = fields.String(required=True, load_only=True, validate=validate.Length(min=8, max=512),
                              metadata={"description": "the workspace's bot token (xoxb-…); stored encrypted, never "
                                                       "returned"})
    signing_secret = fields.String(required=True, load_only=True, validate=validate.Length(min=8, max=512),
                                   metadata={"description": "the Slack app's signing secret; stored encrypted, never "
                                                            "returned"})
    notifications = fields.List(fields.String(), validate=validate.Length(min=1, max=10), metadata={
        "description": "what to post: new_conversations, new_messages, assignments, mentions (default: all)"})
    description = fields.String(allow_none=True, validate=validate.Length(max=500))
    enabled = fields.Boolean()


SLACK_CREATE = SlackConnectionBody()
SLACK_UPDATE = SlackConnectionBody(partial=True)


# --- answers (documented in openapi.py) ------------------------------------------------------------

class WebhookSchema(Schema):
    id = fields.String()
    url = fields.String()
    description = fields.String(allow_none=True)
    events = fields.List(fields.String(), metadata={"description": "event names, or [\"*\"] for every one"})
    inbox_ids = fields.List(fields.String(), allow_none=True, metadata={"description": "null: every inbox"})
    enabled = fields.Boolean()
    created_by = fields.String()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class WebhookWithSecretSchema(WebhookSchema):
    secret = fields.String(metadata={"description": "whsec_… (Standard Webhooks); shown in this answer only"})


class WebhookListSchema(Schema):
    items = fields.List(fields.Nested(WebhookSchema))


class WebhookAttemptSchema(Schema):
    attempt = fields.Integer()
    started_at = fields.DateTime()
    duration_ms = fields.Integer(allow_none=True)
    status = fields.Integer(allow_none=True, metadata={"description": "HTTP status; null: no answer"})
    outcome = fields.String(metadata={"description": "delivered, retry or failed"})
    error = fields.String(allow_none=True)


class WebhookDeliverySchema(Schema):
    id = fields.String()
    event_id = fields.String(metadata={"description": "the webhook-id header (the event's id)"})
    event_type = fields.String()
    state = fields.String(metadata={"description": "pending, delivered or failed"})
    attempts = fields.Integer()
    last_status = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    next_attempt_at = fields.DateTime(allow_none=True)
    conversation_id = fields.String(allow_none=True, metadata={"description": "the conversation the event is about"})
    sequence = fields.Integer(allow_none=True, metadata={
        "description": "its place among that conversation's events sent to this subscription (the body's "
                       "`sequence` attribute, there as a 20-digit string)"})
    log = fields.List(fields.Nested(WebhookAttemptSchema))


class WebhookDeliveryPageSchema(Schema):
    items = fields.List(fields.Nested(WebhookDeliverySchema))
    next_cursor = fields.String(allow_none=True)


class SlackConnectionSchema(Schema):
    id = fields.String()
    inbox_id = fields.String()
    channel_id = fields.String()
    description = fields.String(allow_none=True)
    notifications = fields.List(fields.String())
    enabled = fields.Boolean()
    rate_limited_until = fields.DateTime(allow_none=True, metadata={"description": "Slack answered 429: posts wait"})
    pending_posts = fields.Integer(metadata={"description": "notifications not posted yet (retried, never dropped)"})
    last_error = fields.String(allow_none=True, metadata={"description": "why the oldest pending post failed"})
    created_by = fields.String()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class SlackConnectionListSchema(Schema):
    items = fields.List(fields.Nested(SlackConnectionSchema))


class SlackEventAnswerSchema(Schema):
    ok = fields.Boolean()
    challenge = fields.String(metadata={"description": "url_verification: the challenge sent"})
    duplicate = fields.Boolean(metadata={"description": "a retry of an event already stored"})
    ignored = fields.String()
