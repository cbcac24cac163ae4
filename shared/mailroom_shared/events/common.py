"""Field types shared by several event schemas."""

from marshmallow import Schema, fields


class AddressSchema(Schema):
    name = fields.String(allow_none=True, load_default=None)
    email = fields.String(allow_none=True, load_default=None)


class AttachmentRefSchema(Schema):
    filename = fields.String(required=True)
    content_type = fields.String(required=True)
    size = fields.Integer(required=True)
    sha256 = fields.String(required=True)
    disposition = fields.String(required=True)
    content_id = fields.String(allow_none=True, load_default=None)
    url = fields.String(required=True, metadata={"description": "where the bytes are served (authenticated)"})
