"""Attachments and inline images of a send request: checked one by one (file name, media type,
base64, size limits, content ids) and against the HTML's `cid:` references; and the URL an
attachment is downloaded from."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Protocol

from outbound.domain.body import Body, cid_references
from outbound.domain.errors import InvalidEmail, invalid
from outbound.domain.headers import HeaderInjection, check_header_value
from outbound.domain.mime import Part

_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")
_CONTENT_ID = re.compile(r"^[A-Za-z0-9._%+\-@$]{1,200}$")


class AttachmentLimits(Protocol):
    max_attachments: int
    max_attachment_bytes: int
    max_total_attachment_bytes: int


def attachment_url(email_id: str, attachment_id: str) -> str:
    return f"/api/outbound/emails/{email_id}/attachments/{attachment_id}"


def parse_attachments(values, limits: AttachmentLimits) -> list[Part]:
    if not values:
        return []
    if not isinstance(values, list):
        raise InvalidEmail("attachments: give a list", "attachments")
    if len(values) > limits.max_attachments:
        raise InvalidEmail(f"attachments: at most {limits.max_attachments} files", "attachments")
    parts, total = [], 0
    for i, value in enumerate(values):
        where = f"attachments[{i}]"
        if not isinstance(value, dict):
            raise InvalidEmail(f"{where}: give {{filename, content_type, content_base64}}", where)
        filename = value.get("filename")
        if not filename or not isinstance(filename, str):
            raise InvalidEmail(f"{where}.filename is required", where)
        try:
            check_header_value(f"{where}.filename", filename, max_length=255)
        except HeaderInjection as exc:
            raise invalid(exc) from exc
        if "/" in filename or "\\" in filename:
            raise InvalidEmail(f"{where}.filename: no path separators", where)
        content_type = (value.get("content_type") or "application/octet-stream").strip().lower()
        if not _CONTENT_TYPE.match(content_type):
            raise InvalidEmail(f"{where}.content_type: not a media type", where)
        try:
            data = base64.b64decode(value.get("content_base64") or "", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidEmail(f"{where}.content_base64: not valid base64", where) from exc
        if len(data) > limits.max_attachment_bytes:
            raise InvalidEmail(f"{where} ({filename}): {len(data)} bytes is over the limit of "
                               f"{limits.max_attachment_bytes} bytes per file", where)
        total += len(data)
        if total > limits.max_total_attachment_bytes:
            raise InvalidEmail(f"attachments: {total} bytes in total is over the limit of "
                               f"{limits.max_total_attachment_bytes} bytes", "attachments")
        inline = bool(value.get("inline"))
        content_id = value.get("content_id")
        if content_id is not None:
            content_id = str(content_id).strip("<>")
            if not _CONTENT_ID.match(content_id):
                raise InvalidEmail(f"{where}.content_id: letters, digits and ._%+-@$ only", where)
        if inline and not content_id:
            raise InvalidEmail(f"{where}: an inline image needs a content_id (referenced as cid:…)", where)
        if inline and not content_type.startswith("image/"):
            raise InvalidEmail(f"{where}: only images can be inline", where)
        parts.append(Part(filename=filename, content_type=content_type, data=data, inline=inline,
                          content_id=content_id))
    ids = [p.content_id for p in parts if p.content_id]
    if len(ids) != len(set(ids)):
        raise InvalidEmail("attachments: a content_id is used twice", "attachments")
    return parts


def check_cids(body: Body, parts: list[Part]) -> None:
    """Every `cid:` the HTML references is an inline attachment of this email."""
    referenced = cid_references(body.html)
    available = {p.content_id for p in parts if p.inline}
    missing = referenced - available
    if missing:
        raise InvalidEmail(f"html references cid:{', cid:'.join(sorted(missing))} but no inline attachment "
                           f"has that content_id", "html")
