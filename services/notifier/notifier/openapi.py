"""The notifier HTTP API, described for docs/openapi.yaml: webhook subscriptions for other systems
and Slack connections, for super admins only (others get 403), and Slack's Events API request
URL, which takes no bearer token (Slack signs it with the app's signing secret)."""

from apispec import APISpec
from marshmallow import fields

from mailroom_shared import openapi
from mailroom_shared.openapi import Operation
from notifier import schemas


class DeliveryArgs(openapi.PageArgs):
    state = fields.String(metadata={"description": "pending, delivered, failed, or erased (dropped by a contact "
                                                   "erasure before it was sent)"})


COMPONENTS = {"SlackConnection": schemas.SlackConnectionSchema, "SlackConnectionBody": schemas.SlackConnectionBody,
              "SlackConnectionList": schemas.SlackConnectionListSchema,
              "SlackEventAnswer": schemas.SlackEventAnswerSchema,
              "Webhook": schemas.WebhookSchema, "WebhookWithSecret": schemas.WebhookWithSecretSchema,
              "WebhookBody": schemas.WebhookBody, "WebhookList": schemas.WebhookListSchema,
              "WebhookDelivery": schemas.WebhookDeliverySchema,
              "WebhookDeliveryPage": schemas.WebhookDeliveryPageSchema}
W = ("webhook_id",)
S = ("connection_id",)
UNSIGNED = "/slack/events"  # Slack's callbacks: signed by Slack (v0), no bearer token


class SlackListArgs(openapi.PageArgs):
    inbox_id = fields.String(metadata={"description": "only this inbox's connections"})

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
              "again now with a fresh retry budget (same webhook-id and body); 409 for one dropped by an erasure "
              "(state `erased`)", "WebhookDelivery", status=202,
              path_params=("webhook_id", "delivery_id"), errors=(401, 403, 404, 409)),
    Operation("post", "/api/slack/connections", "Connect an inbox to a Slack channel (super admins): the bot token "
              "and signing secret are stored encrypted and never returned; `notifications` says what is posted",
              "SlackConnection", status=201, body="SlackConnectionBody", errors=(400, 401, 403, 409, 503)),
    Operation("get", "/api/slack/connections", "Every Slack connection (never its token or signing secret), with "
              "its posts still pending and why", "SlackConnectionList", query=SlackListArgs, errors=(401, 403)),
    Operation("get", "/api/slack/connections/{connection_id}", "One Slack connection", "SlackConnection",
              path_params=S, errors=(401, 403, 404)),
    Operation("patch", "/api/slack/connections/{connection_id}", "Change a connection: only the fields given "
              "(a new bot token or signing secret replaces the stored one; inbox and channel cannot change)",
              "SlackConnection", path_params=S, body="SlackConnectionBody", errors=(400, 401, 403, 404, 503)),
    Operation("delete", "/api/slack/connections/{connection_id}", "Disconnect: the connection, its thread map and "
              "its unposted notifications", None, status=204, path_params=S, errors=(401, 403, 404)),
    Operation("post", UNSIGNED, "Slack's Events API request URL. No bearer token: the request must carry a v0 "
              "signature (X-Slack-Signature, X-Slack-Request-Timestamp within 5 minutes) by a connected app's "
              "signing secret. Answers url_verification's challenge; stores each event once per event_id (Slack's "
              "retries answer `duplicate`); replies in a conversation's thread are acted on as the Slack user",
              "SlackEventAnswer", errors=(400, 401, 413)),
]


def register(spec: APISpec) -> None:
    openapi.register(spec, "notifier", COMPONENTS, OPERATIONS)
    spec._paths[UNSIGNED]["post"]["security"] = []  # apispec keeps paths there; Slack signs this one instead
