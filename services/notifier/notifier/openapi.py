"""The notifier HTTP API (webhook subscriptions for other systems), described for
docs/openapi.yaml. Every route is for super admins only (others get 403)."""

from apispec import APISpec
from marshmallow import fields

from mailroom_shared import openapi
from mailroom_shared.openapi import Operation
from notifier import schemas


class DeliveryArgs(openapi.PageArgs):
    state = fields.String(metadata={"description": "pending, delivered or failed"})


COMPONENTS = {"Webhook": schemas.WebhookSchema, "WebhookWithSecret": schemas.WebhookWithSecretSchema,
              "WebhookBody": schemas.WebhookBody, "WebhookList": schemas.WebhookListSchema,
              "WebhookDelivery": schemas.WebhookDeliverySchema,
              "WebhookDeliveryPage": schemas.WebhookDeliveryPageSchema}
W = ("webhook_id",)

OPERATIONS = [
    Operation("post", "/api/webhooks", "Subscribe a URL to events (super admins). The signing secret "
              "(whsec_…) is in this answer only; deliveries are signed per Standard Webhooks", "WebhookWithSecret",
              status=201, body="WebhookBody", errors=(400, 401, 403, 503)),
    Operation("get", "/api/webhooks", "Every webhook subscription (never its secret)", "WebhookList",
              errors=(401, 403)),
    Operation("get", "/api/webhooks/{webhook_id}", "One webhook subscription", "Webhook", path_params=W,
              errors=(401, 403, 404)),
    Operation("patch", "/api/webhooks/{webhook_id}", "Change a subscription: only the fields given change "
              "(`enabled: true` re-enables one disabled after its retries ran out)", "Webhook",
              path_params=W, body="WebhookBody", errors=(400, 401, 403, 404)),
    Operation("delete", "/api/webhooks/{webhook_id}", "Delete a subscription and its delivery log", None,
              status=204, path_params=W, errors=(401, 403, 404)),
    Operation("post", "/api/webhooks/{webhook_id}/rotate-secret", "A new signing secret (in this answer "
              "only); the old one keeps signing alongside it (a second v1 signature) for 24 hours",
              "WebhookWithSecret", path_params=W, errors=(401, 403, 404, 503)),
    Operation("get", "/api/webhooks/{webhook_id}/deliveries", "The delivery log, newest first: each "
              "delivery with its attempts (status, latency, error) and next attempt", "WebhookDeliveryPage",
              path_params=W, query=DeliveryArgs, errors=(400, 401, 403, 404)),
    Operation("post", "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", "Send a delivery "
              "again now with a fresh retry budget (same webhook-id and body)", "WebhookDelivery", status=202,
              path_params=("webhook_id", "delivery_id"), errors=(401, 403, 404)),
]


def register(spec: APISpec) -> None:
    openapi.register(spec, "notifier", COMPONENTS, OPERATIONS)
