"""How a stored message and its attachments are served: their URLs in ingest's HTTP API, and the
response that makes a browser download them instead of rendering them in our origin."""

from __future__ import annotations


def raw_url(intake_id: str) -> str:
    return f"/api/ingest/messages/{intake_id}/raw"


def attachment_url(intake_id: str, sha256: str) -> str:
    return f"/api/ingest/messages/{intake_id}/attachments/{sha256}"


def raw_message_download(intake_id: str) -> dict:
    """The message exactly as received, as an .eml download (`mimetype`, `headers` of the response)."""
    return {"mimetype": "message/rfc822",
            "headers": {"Content-Disposition": f'attachment; filename="{intake_id}.eml"',
                        "X-Content-Type-Options": "nosniff"}}


def attachment_download(filename: str, content_type: str) -> dict:
    """An attachment as a download, never rendered by the browser in our origin: only images
    (not SVG, which can hold script) are shown inline, everything else is opaque bytes."""
    inline_image = content_type.startswith("image/") and content_type != "image/svg+xml"
    disposition = "inline" if inline_image else "attachment"
    return {"mimetype": content_type if inline_image else "application/octet-stream",
            "headers": {"Content-Disposition": f'{disposition}; filename="{_ascii(filename)}"',
                        "X-Content-Type-Options": "nosniff",
                        "Content-Security-Policy": "default-src 'none'; sandbox"}}


def _ascii(name: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name) or "attachment"
