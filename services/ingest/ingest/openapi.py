"""The ingest HTTP API, described for docs/openapi.yaml."""

from apispec import APISpec
from marshmallow import Schema, fields

from ingest.schemas import (
    AcceptedSchema,
    IntakeSchema,
    QuarantinedPageSchema,
    RetriedSchema,
    RetryRequestSchema,
)
from mailroom_shared import openapi
from mailroom_shared.openapi import Operation

COMPONENTS = {"Accepted": AcceptedSchema, "Intake": IntakeSchema, "QuarantinedPage": QuarantinedPageSchema,
              "RetryRequest": RetryRequestSchema, "Retried": RetriedSchema}

class FullMessageArgs(Schema):
    access = fields.String(metadata={"description": "the signed token of the message's link"})
    images = fields.String(metadata={"description": "1: show remote images"})


OPERATIONS = [
    Operation("post", "/api/ingest/channels/{address}/messages",
              "Submit a raw RFC 5322 message for an inbox channel (inbound webhooks, operators); 200 with "
              "duplicate=true when already received", "Accepted", status=202, path_params=("address",),
              raw_body="message/rfc822", errors=(400, 404, 413)),
    Operation("get", "/api/ingest/messages/{intake_id}", "What happened to a received message", "Intake",
              path_params=("intake_id",), errors=(404,)),
    Operation("get", "/api/ingest/messages/{intake_id}/raw", "The full message exactly as received", None,
              path_params=("intake_id",), response_media_type="message/rfc822", errors=(404,)),
    Operation("get", "/api/ingest/messages/{intake_id}/view", "View full message: the whole message as a sanitised "
              "HTML page (no preview cap; remote images blocked unless `images=1`; strict Content-Security-Policy), "
              "through the message's signed link (`access`); an expired or forged link: 403", None,
              path_params=("intake_id",), query=FullMessageArgs, response_media_type="text/html",
              errors=(401, 403, 404, 422)),
    Operation("get", "/api/ingest/messages/{intake_id}/attachments/{sha256}", "One attachment's bytes", None,
              path_params=("intake_id", "sha256"), response_media_type="application/octet-stream", errors=(404,)),
    Operation("get", "/api/ingest/quarantine", "Operators: messages that could not be processed, newest first, "
              "with the reason (account_access or super_admin)", "QuarantinedPage", query=openapi.PageArgs,
              errors=(400, 403)),
    Operation("post", "/api/ingest/quarantine/retry", "Operators: run quarantined messages again after an upgrade "
              "(those named, or all whose reason matches; super_admin); what goes through fills in the inbox's "
              "placeholder", "Retried", status=202, body="RetryRequest", errors=(400, 403)),
]


def register(spec: APISpec) -> None:
    openapi.register(spec, "ingest", COMPONENTS, OPERATIONS)
