"""Events published by the notifier service (exchange `notifier.events`)."""

from marshmallow import Schema, fields


class WebhookDisabledV1(Schema):
    """A webhook subscription failed for its whole retry schedule and was disabled: nothing is
    sent to it (its pending deliveries wait) until a super admin enables it again (PATCH
    /api/webhooks/{id} {"enabled": true})."""

    webhook_id = fields.String(required=True)
    url = fields.String(required=True, metadata={"description": "the subscription's URL (no secret in it)"})
    delivery_id = fields.String(required=True, metadata={"description": "the delivery that used up the schedule"})
    event_id = fields.String(required=True, metadata={"description": "the event that delivery carried"})
    attempts = fields.Integer(required=True)
    last_status = fields.Integer(allow_none=True, load_default=None,
                                 metadata={"description": "the last HTTP status; null: no answer (timeout, refused)"})
    last_error = fields.String(allow_none=True, load_default=None)
