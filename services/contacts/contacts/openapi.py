"""The contacts HTTP API, described for docs/openapi.yaml."""

from apispec import APISpec
from marshmallow import Schema, fields

from contacts import schemas
from mailroom_shared import openapi
from mailroom_shared.openapi import Operation


class FindArgs(Schema):
    email = fields.String(metadata={"description": "exact match (normalised: case, IDNA)"})
    q = fields.String(metadata={"description": "search by name or email"})
    limit = fields.Integer()


COMPONENTS = {"Contact": schemas.ContactSchema, "ContactCreate": schemas.ContactCreateSchema,
              "ContactUpdate": schemas.ContactUpdateSchema, "ContactEmail": schemas.ContactEmailSchema,
              "ContactPage": schemas.ContactPageSchema, "TimelinePage": schemas.TimelinePageSchema,
              "ContactMerge": schemas.ContactMergeSchema, "Erasure": schemas.ErasureSchema}

OPERATIONS = [
    Operation("get", "/api/contacts", "Find contacts by email or search by name/email", "ContactPage",
              query=FindArgs, errors=(400,)),
    Operation("post", "/api/contacts", "Create a contact with one or more addresses", "Contact", status=201,
              body="ContactCreate", errors=(400, 409)),
    Operation("get", "/api/contacts/{contact_id}", "One contact", "Contact", path_params=("contact_id",),
              errors=(404,)),
    Operation("patch", "/api/contacts/{contact_id}", "Rename a contact (announced with contact_updated)", "Contact",
              path_params=("contact_id",), body="ContactUpdate", errors=(400, 404)),
    Operation("post", "/api/contacts/{contact_id}/emails", "Add an address to a contact (201; 200 if it already "
              "has it; 409 naming the contact that has it). Announced with contact_updated", "Contact", status=201,
              path_params=("contact_id",), body="ContactEmail", errors=(400, 404, 409)),
    Operation("delete", "/api/contacts/{contact_id}/emails/{email}", "Remove an address from a contact (409 for its "
              "last one). Announced with contact_updated", "Contact", path_params=("contact_id", "email"),
              errors=(404, 409)),
    Operation("get", "/api/contacts/{contact_id}/timeline", "Every email in and out, newest first",
              "TimelinePage", path_params=("contact_id",), query=openapi.PageArgs, errors=(400, 404)),
    Operation("post", "/api/contacts/{contact_id}/merge", "Merge another contact into this one: its addresses, "
              "identities, timeline and conversations follow this one, it is deleted (contacts_merged)", "Contact",
              path_params=("contact_id",), body="ContactMerge", errors=(400, 404)),
    Operation("post", "/api/contacts/{contact_id}/erase", "Erase a contact on request (GDPR art. 17; super admins): "
              "contact_erased, every service erases that person's data; the report fills in as they confirm",
              "Erasure", status=202, path_params=("contact_id",), errors=(403, 404)),
    Operation("get", "/api/contacts/erasures/{erasure_id}", "An erasure's report (super admins)", "Erasure",
              path_params=("erasure_id",), errors=(403, 404)),
]


def register(spec: APISpec) -> None:
    openapi.register(spec, "contacts", COMPONENTS, OPERATIONS)
