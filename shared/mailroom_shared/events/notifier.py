"""Events published by the notifier service (exchange `notifier.events`)."""

from marshmallow import Schema, fields

from mailroom_shared.events.contacts import ContactDataErasedV1


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


class ContactNotificationsErasedV1(ContactDataErasedV1):
    """The notifier's confirmation of a contact_erased (contacts assembles the erasure report):
    the webhook delivery log and Slack posts of the person's events redacted, deliveries and posts
    not sent yet dropped, events not relayed yet dropped (counts only)."""
