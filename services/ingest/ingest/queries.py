"""Ingest's read side: the inbox addresses it knows, what happened to a received message, and
the stored bytes behind the download routes and conversations' HTML preview."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ingest.blobstore import BlobNotFound, BlobStore
from ingest.domain.downloads import raw_url
from ingest.domain.parsing import parse_message
from ingest.models import Channel, Intake
from mailroom_shared import observability
from mailroom_shared.db import aware, utcnow
from mailroom_shared.http import NotFound
from mailroom_shared.pagination import newest_first, next_cursor


def known_channels(session: Session) -> set[str]:
    """Every inbox channel address (RCPT is accepted only for these)."""
    return set(session.execute(select(Channel.address)).scalars())


def _intake(session: Session, intake_id: str) -> Intake:
    row = session.get(Intake, intake_id)
    if row is None:
        raise NotFound(f"no message {intake_id}")
    return row


def intake_view(session: Session, intake_id: str) -> dict:
    """What happened to a received message (IntakeSchema): processed, quarantined and why."""
    row = _intake(session, intake_id)
    return {"id": row.id, "channel_address": row.channel_address, "via": row.via, "status": row.status,
            "reason": row.reason, "size": row.size, "received_at": row.received_at, "raw_url": raw_url(row.id)}


def raw_blob_key(session: Session, intake_id: str) -> str:
    """Where the message's bytes, exactly as received, are in the blob store."""
    return _intake(session, intake_id).blob_key


def attachment_of(session: Session, intake_id: str, sha256: str) -> tuple[dict, str]:
    """One attachment's metadata (as in message_received) and the blob key of its raw message."""
    row = session.get(Intake, intake_id)
    meta = next((a for a in (row.attachments or []) if a.get("sha256") == sha256), None) if row else None
    if meta is None:
        raise NotFound(f"no attachment {sha256} on message {intake_id}")
    return meta, row.blob_key


def attachment_bytes(blobs: BlobStore, raw_key: str, sha256: str) -> bytes:
    """The attachment's bytes. Attachments are stored without fsync (handlers.py): after a crash
    they are extracted again from their (durable) raw message and stored back."""
    try:
        return blobs.get(sha256)
    except BlobNotFound:
        pass
    for attachment in parse_message(blobs.get(raw_key)).attachments:
        if hashlib.sha256(attachment.payload).hexdigest() == sha256:
            blobs.put(attachment.payload, durable=False)
            return attachment.payload
    raise NotFound("attachment bytes are missing from the blob store")


def html_source(session: Session, intake_id: str) -> tuple[str, dict[str, str]]:
    """The raw message's blob key, and its attachments' URLs by Content-ID (for `cid:` images)."""
    row = _intake(session, intake_id)
    stored = list(row.attachments or [])
    return row.blob_key, {a["content_id"]: a["url"] for a in stored if a.get("content_id") and a.get("url")}


def quarantined_page(session: Session, cursor: dict | None, limit: int) -> dict:
    """Quarantined messages, newest first (QuarantinedPageSchema): what an operator re-runs after
    an upgrade."""
    rows = session.execute(newest_first(select(Intake).where(Intake.status == "quarantined"),
                                        Intake.received_at, Intake.id, cursor, limit)).scalars().all()
    return {"items": [{"id": row.id, "channel_address": row.channel_address, "via": row.via, "status": row.status,
                       "reason": row.reason, "size": row.size, "attempts": row.attempts,
                       "received_at": row.received_at, "processed_at": row.processed_at, "raw_url": raw_url(row.id)}
                      for row in rows[:limit]],
            "next_cursor": next_cursor(rows, limit, lambda row: row.received_at)}


# --- read when Prometheus scrapes (the intake alerts and dashboard use these names) -------------

def _stored(session: Session):
    return session.execute(select(func.count(), func.min(Intake.received_at)).where(Intake.status == "stored")).one()


observability.database_gauge("mailroom_intake_backlog_messages", "Intake rows stored and not yet processed.",
                             lambda session: _stored(session)[0], service="ingest")
observability.database_gauge(
    "mailroom_intake_oldest_backlog_age_seconds", "Age of the oldest intake row not yet processed.",
    lambda session: (lambda oldest: (utcnow() - aware(oldest)).total_seconds() if oldest else 0.0)(
        _stored(session)[1]), service="ingest")
observability.database_gauge(
    "mailroom_quarantined_messages", "Messages in quarantine now.",
    lambda session: session.scalar(select(func.count()).where(Intake.status == "quarantined")), service="ingest")
