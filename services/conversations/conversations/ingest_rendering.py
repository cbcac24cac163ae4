"""What conversations asks ingest over RPC: a message's HTML re-sanitised from the raw message
with remote images allowed (`GET /api/messages/{id}?images=load`; the same allow-list otherwise,
capped like the stored preview)."""

from __future__ import annotations

import logging

import eventlet

from mailroom_shared.http import ServiceUnavailable

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 15


def html_with_images(ingest_rpc, message) -> str:
    """The HTML of `message` (which has an intake id) with remote images; 503 when ingest does
    not answer in time or cannot render it."""
    try:
        with eventlet.Timeout(TIMEOUT_SECONDS):
            rendered = ingest_rpc.render_html.call_async(message.intake_id, True).result()
    except eventlet.Timeout:
        raise ServiceUnavailable("ingest did not answer: try again") from None
    except Exception as exc:
        log.warning("ingest could not re-render message %s: %s", message.id, exc)
        raise ServiceUnavailable("the raw message could not be rendered") from exc
    return rendered["html"] or ""
