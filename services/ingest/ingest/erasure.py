"""contacts' `contact_erased` (GDPR art. 17) as ingest applies it: the person's intake rows (the
inbound messages on their timeline, and what they sent over SMTP by envelope sender) are deleted
with their raw message and attachment blobs. A raw blob another remaining row still points at (the
same bytes to a second inbox) stays; an attachment blob is only a cache of bytes extracted from a
raw message (queries.attachment_bytes), so deleting it never breaks another message. Blobs go
before the rows are committed: a crash in between leaves rows whose redelivered erasure deletes
them (a missing blob is no error), never an orphaned blob nothing points at. Confirmed with
`contact_mail_erased` (counts only)."""

from __future__ import annotations

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from ingest.blobstore import BlobStore
from ingest.models import Intake
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.messaging.outbox import Outbox


def erase_contact(session: Session, blobs: BlobStore, outbox: Outbox, data: dict) -> dict:
    emails = sorted({e for e in (try_normalise_email(x) for x in data.get("emails") or []) if e})
    match = [Intake.id.in_(data.get("intake_ids") or [""])]
    if emails:
        match.append(func.lower(Intake.envelope_from).in_(emails))
    rows = session.execute(select(Intake).where(or_(*match))).scalars().all()
    ids = [r.id for r in rows]
    raw_keys = {r.blob_key for r in rows}
    shared = set(session.execute(select(Intake.blob_key).where(
        Intake.blob_key.in_(raw_keys or [""]), Intake.id.notin_(ids or [""]))).scalars())
    attachment_keys = {a["sha256"] for r in rows for a in (r.attachments or []) if a.get("sha256")}
    blobs_deleted = sum(1 for key in sorted(raw_keys - shared) if blobs.delete(key))
    attachments_deleted = sum(1 for key in sorted(attachment_keys - raw_keys) if blobs.delete(key))
    session.execute(delete(Intake).where(Intake.id.in_(ids or [""])))
    erased = {"messages": len(ids), "raw_messages": blobs_deleted, "attachments": attachments_deleted}
    outbox.record(session, "contact_mail_erased", data["contact_id"], {
        "erasure_id": data["erasure_id"], "contact_id": data["contact_id"], "erased": erased})
    return erased
