"""The ingest HTTP API, described for docs/openapi.yaml."""

from apispec import APISpec
from marshmallow import Schema, fields

from ingest.mailbox_api import (
    MailboxCreateSchema,
    MailboxListSchema,
    MailboxPatchSchema,
    MailboxTestSchema,
    MailboxViewSchema,
)
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
              "RetryRequest": RetryRequestSchema, "Retried": RetriedSchema,
              "MailboxCreate": MailboxCreateSchema, "MailboxPatch": MailboxPatchSchema, "Mailbox": MailboxViewSchema,
              "MailboxList": MailboxListSchema, "MailboxTest": MailboxTestSchema}

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
    Operation("get", "/api/ingest/mailboxes", "Connected IMAP mailboxes added through the API, with their status "
              "(account_access or super_admin)", "MailboxList", errors=(403,)),
    Operation("post", "/api/ingest/mailboxes", "Connect an IMAP mailbox for one of our inbox addresses: password or "
              "XOAUTH2 (refresh token); secrets sealed at rest and never returned", "Mailbox", status=201,
              body="MailboxCreate", errors=(400, 403, 413, 503)),
    Operation("get", "/api/ingest/mailboxes/{mailbox_id}", "One connected mailbox and its status (last poll, last "
              "success, last error, unreachable since, messages fetched)", "Mailbox", path_params=("mailbox_id",),
              errors=(403, 404)),
    Operation("patch", "/api/ingest/mailboxes/{mailbox_id}", "Change a connected mailbox (secrets replaced only when "
              "given)", "Mailbox", path_params=("mailbox_id",), body="MailboxPatch", errors=(400, 403, 404, 413, 503)),
    Operation("delete", "/api/ingest/mailboxes/{mailbox_id}", "Disconnect a mailbox (mail already fetched stays)",
              None, status=204, path_params=("mailbox_id",), errors=(403, 404)),
    Operation("post", "/api/ingest/mailboxes/{mailbox_id}/test", "Test the connection once: how far it got "
              "(connect, tls, login, select, ok) and the server's own answer", "MailboxTest",
              path_params=("mailbox_id",), errors=(403, 404, 503)),
    Operation("post", "/api/ingest/quarantine/retry", "Operators: run quarantined messages again after an upgrade "
              "(those named, or all whose reason matches; super_admin); what goes through fills in the inbox's "
              "placeholder", "Retried", status=202, body="RetryRequest", errors=(400, 403)),
]


def register(spec: APISpec) -> None:
    openapi.register(spec, "ingest", COMPONENTS, OPERATIONS)
