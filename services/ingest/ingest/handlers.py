"""Ingest's use cases: accept raw mail durably; process it into `message_received` or quarantine
it; keep our copy of the inboxes; record how a mailbox poll went.

Accepting is cheap and happens before SMTP answers 250 (raw bytes fsynced, intake row
committed). Processing (parse, classify, forward detection) happens after, in the service's
intake processor, so a slow or hostile message never holds an SMTP session open, and a crash
loses nothing: rows in status `stored` are picked up again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ingest.blobstore import DirectoryBlobStore
from ingest.domain.analysis import AnalysisSettings, analyse, dedupe_key, render_html
from ingest.domain.bounces import bounced_message_ids
from ingest.domain.classify import internal_forward
from ingest.domain.downloads import attachment_url, raw_url
from ingest.domain.parsing import MessageTooComplex
from ingest.domain.recipients import split_recipient
from ingest.models import Channel, Intake, MailboxCursor, TrustedSender
from ingest.settings import Settings
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.caching import Expiring
from mailroom_shared.db import Database, is_postgres, utcnow
from mailroom_shared.http import HttpError, NotFound, PayloadTooLarge
from mailroom_shared.messaging.outbox import Outbox
from mailroom_shared.text import iso_time

log = logging.getLogger(__name__)

INTAKE_NOTIFY_CHANNEL = "mailroom_ingest_intake"  # PostgreSQL LISTEN/NOTIFY: mail was stored
TEXT_LIMIT = 1_000_000  # characters of text/plain carried in the event; the raw message has it all


# --- accepting mail (SMTP listener, HTTP, IMAP) ------------------------------------------------------

@dataclass
class AcceptResult:
    intake_ids: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # channels that already had this message
    unknown_recipients: list[str] = field(default_factory=list)


class MessageTooLarge(ValueError):
    pass


def accept(database: Database, blobs: DirectoryBlobStore, raw: bytes, recipients: list[str], via: str,
           settings: Settings, envelope_from: str | None = None,
           channels: set[str] | None = None) -> AcceptResult:
    """Store the bytes durably and log one intake row per inbox channel addressed. `channels`:
    the inbox addresses if the caller has them (the SMTP listener's cache); read otherwise."""
    if len(raw) > settings.max_message_bytes:
        raise MessageTooLarge(f"message of {len(raw)} bytes exceeds the {settings.max_message_bytes} byte limit")
    result = AcceptResult()
    if channels is None:
        with database.transaction() as session:
            channels = set(session.execute(select(Channel.address)).scalars())
    targets: dict[str, str | None] = {}
    for recipient in recipients:
        resolved = split_recipient(recipient, channels)
        if resolved is None:
            result.unknown_recipients.append(recipient)
        else:
            targets.setdefault(resolved[0], resolved[1])
    if not targets:
        return result
    blob_key = blobs.put(raw)
    key = dedupe_key(raw)
    for channel, token in targets.items():
        intake_id = str(uuid.uuid4())
        try:
            with database.transaction() as session:
                session.add(Intake(id=intake_id, channel_address=channel, reply_token=token, via=via,
                                   dedupe_key=key, blob_key=blob_key, size=len(raw),
                                   envelope_from=envelope_from, status="stored", received_at=utcnow()))
                if is_postgres(session):  # delivered on commit: wakes the intake processors at once
                    session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": INTAKE_NOTIFY_CHANNEL})
        except IntegrityError:
            result.duplicates.append(channel)
            continue
        result.intake_ids.append(intake_id)
    return result


def accept_posted(database: Database, blobs: DirectoryBlobStore, raw: bytes, address: str,
                  settings: Settings) -> dict:
    """A raw message POSTed for one channel (providers' inbound webhooks, operators): the
    AcceptedSchema answer; `duplicate` when the channel already had it."""
    if not raw.strip():
        raise HttpError("empty body: send the raw RFC 5322 message as the request body")
    try:
        result = accept(database, blobs, raw, [address], "http", settings)
    except MessageTooLarge as exc:
        raise PayloadTooLarge(str(exc)) from exc
    if result.unknown_recipients:
        raise NotFound(f"{address} is not an inbox channel address")
    return {"intake_ids": result.intake_ids, "duplicate": bool(result.duplicates and not result.intake_ids)}


# --- processing stored mail into events --------------------------------------------------------------

@dataclass(frozen=True)
class InboxSnapshot:
    own: frozenset[str]  # every inbox channel address
    trusted: frozenset[str]  # inbox members: their forwards are attributed to the original sender
    inbox_of: dict[str, str]  # channel address -> inbox id


class InboxDirectory:
    """Inbox addresses and trusted forwarders, re-read at most every `ttl` seconds: two queries
    per message otherwise. A change (inbox_updated) is seen within `ttl`."""

    def __init__(self, ttl: float = 2.0):
        self._snapshot = Expiring(ttl, InboxSnapshot(frozenset(), frozenset(), {}))

    def get(self, session: Session) -> InboxSnapshot:
        return self._snapshot.get(lambda: self._load(session))

    @staticmethod
    def _load(session: Session) -> InboxSnapshot:
        inbox_of = {row.address: row.inbox_id for row in session.execute(select(Channel.address, Channel.inbox_id))}
        trusted = frozenset(session.execute(select(TrustedSender.email)).scalars())
        return InboxSnapshot(frozenset(inbox_of), trusted, inbox_of)


def _claim_stored(session: Session, limit: int) -> list[Intake]:
    """The oldest stored rows, locked; rows another replica holds are skipped, not waited for."""
    query = select(Intake).where(Intake.status == "stored").order_by(Intake.received_at, Intake.id).limit(limit)
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    return list(session.execute(query).scalars())


def process_batch(database: Database, blobs: DirectoryBlobStore, outbox: Outbox, settings: Settings,
                  directory: InboxDirectory | None = None, limit: int = 1) -> int:
    """Process up to `limit` stored intake rows in one transaction; how many (0: none waiting).
    A message that cannot be parsed or analysed is quarantined on its own and never blocks the
    rest. One commit per batch instead of per message: under load the claim, the commit and the
    connection checkout are shared (`INGEST_INTAKE_BATCH`); when idle a batch is one message. If
    the transaction itself fails, the caller retries with `limit=1` to isolate the culprit."""
    directory = directory or InboxDirectory(ttl=0)
    with database.transaction() as session:
        claimed = _claim_stored(session, limit)
        # the batch's events go into the outbox in one INSERT at the end (in order); the intake
        # rows' UPDATEs are flushed together just before it
        outbox.record_envelopes(session, [_process(session, blobs, outbox, settings, directory, intake)
                                          for intake in claimed])
        return len(claimed)


def _process(session: Session, blobs: DirectoryBlobStore, outbox: Outbox, settings: Settings,
             directory: InboxDirectory, intake: Intake) -> tuple[str, dict]:
    """The intake row updated; the event that announces it (event type, envelope)."""
    try:
        data = _message_received(session, blobs, intake, settings, directory)
        # built (and validated) here: an event the catalogue refuses quarantines its message
        # instead of failing the batch again and again
        envelope = outbox.envelope("message_received", intake.id, data)
    except MessageTooComplex as exc:
        return _quarantine(outbox, intake, f"too complex to parse safely: {exc}")
    except Exception as exc:  # never let one message crash the pipeline
        log.exception("quarantining intake %s", intake.id)
        return _quarantine(outbox, intake, f"processing failed: {type(exc).__name__}: {exc}")
    intake.status = "processed"
    intake.processed_at = utcnow()
    intake.attachments = data["attachments"]
    return "message_received", envelope


def _quarantine(outbox: Outbox, intake: Intake, reason: str) -> tuple[str, dict]:
    intake.status = "quarantined"
    intake.reason = reason[:2000]
    intake.processed_at = utcnow()
    return "message_quarantined", outbox.envelope("message_quarantined", intake.id, {
        "intake_id": intake.id, "channel_address": intake.channel_address, "via": intake.via,
        "reason": intake.reason, "size": intake.size, "raw_url": raw_url(intake.id),
    })


def _message_received(session: Session, blobs: DirectoryBlobStore, intake: Intake,
                      settings: Settings, directory: InboxDirectory) -> dict:
    raw = blobs.get(intake.blob_key)
    inboxes = directory.get(session)
    analysis = analyse(raw, AnalysisSettings(
        own_addresses=inboxes.own, own_message_id_domain=settings.own_message_id_domain,
        internal_domains=settings.internal_domains, spam_score_headers=settings.spam_score_headers,
        limits=settings.limits, html_preview_bytes=settings.html_preview_bytes,
    ), trusted_senders=inboxes.trusted | inboxes.own)  # another of our inboxes forwards as a member would
    parsed = analysis.parsed
    attachments, cid_urls = [], {}
    for attachment in parsed.attachments:
        # not fsynced: an attachment can always be extracted again from the (fsynced) raw message
        sha = blobs.put(attachment.payload, durable=False)
        url = attachment_url(intake.id, sha)
        if attachment.content_id:
            cid_urls[attachment.content_id] = url
        attachments.append({"filename": attachment.filename, "content_type": attachment.content_type,
                            "size": attachment.size, "sha256": sha, "disposition": attachment.disposition,
                            "content_id": attachment.content_id, "url": url})
    html, truncated, blocked = render_html(parsed, cid_urls, settings.html_preview_bytes)
    forward = analysis.forward
    classification = internal_forward(analysis.classification, parsed.sender.email if parsed.sender else None,
                                      intake.channel_address, inboxes.inbox_of)
    return {
        "intake_id": intake.id, "channel_address": intake.channel_address, "via": intake.via,
        "message_id": analysis.message_id, "subject": parsed.subject or "",
        "date": parsed.date.isoformat() if parsed.date else None,
        "sender": parsed.sender.as_dict() if parsed.sender else None,
        "attributed_to": analysis.attributed_to.as_dict(),
        "reply_to": [a.as_dict() for a in parsed.reply_to], "to": [a.as_dict() for a in parsed.to],
        "cc": [a.as_dict() for a in parsed.cc], "in_reply_to": parsed.in_reply_to,
        "references": parsed.references, "reply_token": intake.reply_token,
        "text": (parsed.text or "")[:TEXT_LIMIT] or None, "html": html, "html_truncated": truncated,
        "remote_images_blocked": blocked, "size": intake.size, "raw_url": raw_url(intake.id),
        "attachments": attachments,
        "flags": {"auto_submitted": classification.auto_submitted, "bounce": classification.bounce,
                  "spam": classification.spam, "loop": classification.loop,
                  "reasons": list(classification.reasons)},
        "forward": None if forward is None else {
            **forward.as_dict(), "trusted": analysis.forward_trusted,
            "forwarded_by": (parsed.sender.as_dict() if parsed.sender else {"name": None, "email": None})},
        "received_at": iso_time(intake.received_at),
        "bounced_message_ids": bounced_message_ids(parsed.message) if classification.bounce else [],
    }


# --- what other services tell us, what mailboxes do ------------------------------------------------

def replace_inbox(session: Session, inbox_id: str, channel_addresses: list[str], member_emails: list[str]) -> None:
    """Apply conversations' inbox_updated: our copy of an inbox's addresses and members."""
    session.query(Channel).filter(Channel.inbox_id == inbox_id).delete()
    session.query(TrustedSender).filter(TrustedSender.inbox_id == inbox_id).delete()
    for address in {a for a in map(try_normalise_email, channel_addresses) if a}:
        session.merge(Channel(address=address, inbox_id=inbox_id))
    for email in {a for a in map(try_normalise_email, member_emails) if a}:
        session.merge(TrustedSender(email=email, inbox_id=inbox_id))


def record_mailbox_poll(session: Session, outbox: Outbox, mailbox_id: str, error: str | None = None,
                        error_kind: str | None = None) -> None:
    """How a mailbox poll went (`error` None: it worked). The first failure after a success is
    announced (`mailbox_unreachable`), not every failed poll."""
    row = session.get(MailboxCursor, mailbox_id) or MailboxCursor(mailbox_id=mailbox_id, last_uid=0)
    if error is None:
        row.consecutive_failures, row.last_error = 0, None
    else:
        row.consecutive_failures = (row.consecutive_failures or 0) + 1
        row.last_error = error
        log.error("mailbox %s: %s (%s failures in a row)", mailbox_id, error, row.consecutive_failures)
        if row.consecutive_failures == 1:
            outbox.record(session, "mailbox_unreachable", mailbox_id, {
                "mailbox_id": mailbox_id, "error": f"{error_kind}: {error}",
                "consecutive_failures": row.consecutive_failures})
    session.merge(row)
