"""contacts' `contact_erased` (GDPR art. 17) as ingest applies it: the person's intake rows (the
inbound messages on their timeline, and what they sent over SMTP by envelope sender) are deleted
with their raw message and attachment blobs. Mail accepted before the erasure and not yet
analysed (status `stored`: still in the intake queue) or quarantined is found by the addresses in
its own headers (From, Sender, Reply-To, read from the head of the raw message as the quarantine
summary does), whatever its envelope sender: a processor analysing one at this moment finds its
row gone when it writes the outcome and publishes nothing (handlers._apply). Events about the
person that the outbox has not relayed yet (a message_received of theirs) are dropped too.

A raw blob another remaining row still points at (the same bytes to a second inbox) stays; an
attachment blob is only a cache of bytes extracted from a raw message (queries.attachment_bytes),
so deleting it never breaks another message. Blobs go before the rows are committed: a crash in
between leaves rows whose redelivered erasure deletes them (a missing blob is no error), never an
orphaned blob nothing points at. Confirmed with
`contact_mail_erased` (counts only)."""

from __future__ import annotations

import logging
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from ingest.blobstore import BlobStore
from ingest.domain.summary import SUMMARY_HEADER_BYTES
from ingest.models import Intake
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.erasure import drop_pending_events, erasure_keys
from mailroom_shared.messaging.outbox import Outbox

log = logging.getLogger(__name__)
NOT_ANALYSED = ("stored", "quarantined")
HEADER_ADDRESSES = ("From", "Sender", "Reply-To")


def header_addresses(head: bytes) -> set[str]:
    """The normalised addresses of From, Sender and Reply-To in the head of a raw message (an
    unreadable header block has none)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = head.find(separator)
        if end != -1:
            head = head[:end + len(separator)]
            break
    try:
        message = BytesHeaderParser(policy=compat32).parsebytes(head)
        values = [str(v) for name in HEADER_ADDRESSES for v in (message.get_all(name) or [])]
        found = {try_normalise_email(address) for _name, address in getaddresses(values)}
    except Exception:  # a header block that cannot be read names nobody
        return set()
    return {a.lower() for a in found if a}


def _not_analysed_of(session: Session, blobs: BlobStore, emails: list[str], skip: set[str]) -> list[str]:
    """Intake rows still in the queue (or quarantined) whose headers name one of `emails`."""
    wanted, found = set(emails), []
    for intake_id, blob_key in session.execute(select(Intake.id, Intake.blob_key).where(
            Intake.status.in_(NOT_ANALYSED))):
        if intake_id in skip:
            continue
        try:
            head = blobs.head(blob_key, SUMMARY_HEADER_BYTES)
        except Exception:  # noqa: BLE001 - a missing or unreadable blob: nothing of anyone to read
            log.warning("erasure: intake %s: its raw message cannot be read", intake_id)
            continue
        if header_addresses(head) & wanted:
            found.append(intake_id)
    return found


def erase_contact(session: Session, blobs: BlobStore, outbox: Outbox, data: dict) -> dict:
    keys = erasure_keys(data)
    emails = keys.lower_emails
    intake_ids = [i for i in (data.get("intake_ids") or []) if isinstance(i, str)]
    match = [Intake.id.in_(intake_ids or [""])]
    if emails:
        match.append(func.lower(Intake.envelope_from).in_(emails))
    rows = list(session.execute(select(Intake).where(or_(*match))).scalars())
    queued = _not_analysed_of(session, blobs, emails, {r.id for r in rows}) if emails else []
    if queued:
        rows += list(session.execute(select(Intake).where(Intake.id.in_(queued))).scalars())
    ids = [r.id for r in rows]
    raw_keys = {r.blob_key for r in rows}
    shared = set(session.execute(select(Intake.blob_key).where(
        Intake.blob_key.in_(raw_keys or [""]), Intake.id.notin_(ids or [""]))).scalars())
    attachment_keys = {a["sha256"] for r in rows for a in (r.attachments or []) if a.get("sha256")}
    blobs_deleted = sum(1 for key in sorted(raw_keys - shared) if blobs.delete(key))
    attachments_deleted = sum(1 for key in sorted(attachment_keys - raw_keys) if blobs.delete(key))
    session.execute(delete(Intake).where(Intake.id.in_(ids or [""])))
    events = drop_pending_events(session, outbox.table, keys)
    erased = {"messages": len(ids), "raw_messages": blobs_deleted, "attachments": attachments_deleted,
              "not_yet_processed": len(queued), "pending_events": events}
    outbox.record(session, "contact_mail_erased", data["contact_id"], {
        "erasure_id": data["erasure_id"], "contact_id": data["contact_id"], "erased": erased})
    return erased
