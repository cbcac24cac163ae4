"""Ingest's use cases: accept raw mail durably, then process it into `message_received`.

Accepting is cheap and happens before SMTP answers 250 (raw bytes fsynced, intake row
committed). Processing (parse, classify, forward detection) happens after, in the service, so a
slow or hostile message never holds an SMTP session open, and a crash loses nothing: rows in
status `stored` are picked up again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ingest.blobstore import DirectoryBlobStore
from ingest.domain.analysis import AnalysisSettings, analyse, render_html, stable_message_id
from ingest.domain.model import Classification, ParseLimits
from ingest.domain.parsing import MessageTooComplex, parse_message, parse_message_ids
from ingest.domain.recipients import split_recipient
from ingest.models import Channel, Intake, TrustedSender
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.caching import Expiring
from mailroom_shared.db import Database, is_postgres, utcnow
from mailroom_shared.events.envelope import build_envelope
from mailroom_shared.messaging.outbox import Outbox

log = logging.getLogger(__name__)

INTAKE_NOTIFY_CHANNEL = "mailroom_ingest_intake"  # PostgreSQL LISTEN/NOTIFY: mail was stored
TEXT_LIMIT = 1_000_000  # characters of text/plain carried in the event; the raw message has it all


@dataclass(frozen=True)
class IntakeSettings:
    max_message_bytes: int = 25 * 1024 * 1024
    internal_domains: frozenset[str] = frozenset()
    own_message_id_domain: str | None = None
    spam_score_headers: dict[str, float] = field(default_factory=dict)
    limits: ParseLimits = field(default_factory=ParseLimits)
    html_preview_bytes: int = 100_000


@dataclass
class AcceptResult:
    intake_ids: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # channels that already had this message
    unknown_recipients: list[str] = field(default_factory=list)


class MessageTooLarge(ValueError):
    pass


def known_channels(session: Session) -> set[str]:
    return set(session.execute(select(Channel.address)).scalars())


def dedupe_key(raw: bytes) -> str:
    """Message-ID from the headers alone (cheap), else a stable id from the bytes."""
    try:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw[:256 * 1024])
        ids = parse_message_ids([str(v) for v in headers.get_all("Message-ID", [])])
    except Exception:  # a header section we cannot even split: the bytes identify it
        ids = []
    return ids[0] if ids else stable_message_id(raw)


def accept(database: Database, blobs: DirectoryBlobStore, raw: bytes, recipients: list[str], via: str,
           settings: IntakeSettings, envelope_from: str | None = None,
           channels: set[str] | None = None) -> AcceptResult:
    """Store the bytes durably and log one intake row per inbox channel addressed. `channels`:
    the inbox addresses if the caller has them (the SMTP listener's cache); read otherwise."""
    if len(raw) > settings.max_message_bytes:
        raise MessageTooLarge(f"message of {len(raw)} bytes exceeds the {settings.max_message_bytes} byte limit")
    result = AcceptResult()
    if channels is None:
        with database.transaction() as session:
            channels = known_channels(session)
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


def raw_url(intake_id: str) -> str:
    return f"/api/ingest/messages/{intake_id}/raw"


def attachment_url(intake_id: str, sha256: str) -> str:
    return f"/api/ingest/messages/{intake_id}/attachments/{sha256}"


def _claim_stored(session: Session, limit: int) -> list[Intake]:
    """The oldest stored rows, locked; rows another replica holds are skipped, not waited for."""
    query = select(Intake).where(Intake.status == "stored").order_by(Intake.received_at, Intake.id).limit(limit)
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    return list(session.execute(query).scalars())


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


def internal_forward(classification: Classification, sender_email: str | None, channel_address: str,
                     inbox_of: dict[str, str]) -> Classification:
    """Mail we sent from one inbox to another (a team forwarding to another team) carries our
    origin header but is not a loop: only mail coming back to the inbox it left is."""
    sender_inbox = inbox_of.get((sender_email or "").lower())
    if not classification.loop or sender_inbox is None or sender_inbox == inbox_of.get(channel_address):
        return classification
    reasons = tuple(r for r in classification.reasons if not r.startswith("loop:"))
    return dataclasses.replace(classification, loop=False,
                               reasons=reasons + (f"internal:from another inbox ({sender_email})",))


def process_batch(database: Database, blobs: DirectoryBlobStore, outbox: Outbox, settings: IntakeSettings,
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
        outbox.record_envelopes(session, [_process(session, blobs, settings, directory, intake)
                                          for intake in claimed])
        return len(claimed)


def _process(session: Session, blobs: DirectoryBlobStore, settings: IntakeSettings,
             directory: InboxDirectory, intake: Intake) -> tuple[str, dict]:
    """The intake row updated; the event that announces it (event type, envelope)."""
    try:
        data = _message_received(session, blobs, intake, settings, directory)
        # built (and validated) here: an event the catalogue refuses quarantines its message
        # instead of failing the batch again and again
        envelope = build_envelope("message_received", intake.id, data)
    except MessageTooComplex as exc:
        return _quarantine(intake, f"too complex to parse safely: {exc}")
    except Exception as exc:  # never let one message crash the pipeline
        log.exception("quarantining intake %s", intake.id)
        return _quarantine(intake, f"processing failed: {type(exc).__name__}: {exc}")
    intake.status = "processed"
    intake.processed_at = utcnow()
    intake.attachments = data["attachments"]
    return "message_received", envelope


def _quarantine(intake: Intake, reason: str) -> tuple[str, dict]:
    intake.status = "quarantined"
    intake.reason = reason[:2000]
    intake.processed_at = utcnow()
    return "message_quarantined", build_envelope("message_quarantined", intake.id, {
        "intake_id": intake.id, "channel_address": intake.channel_address, "via": intake.via,
        "reason": intake.reason, "size": intake.size, "raw_url": raw_url(intake.id),
    })


def _message_received(session: Session, blobs: DirectoryBlobStore, intake: Intake,
                      settings: IntakeSettings, directory: InboxDirectory) -> dict:
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
        "received_at": _iso(intake.received_at),
        "bounced_message_ids": _bounced_message_ids(parsed.message) if classification.bounce else [],
    }


_RETURNED_PARTS = ("message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers")
MAX_BOUNCED_IDS = 10


def _bounced_message_ids(message) -> list[str]:
    """The Message-IDs of the original message a DSN returns (RFC 3464: its message/rfc822 or
    text/rfc822-headers part), so that outbound can mark its sent email bounced."""
    found: list[str] = []
    stack, seen = [message], 0
    while stack and seen < 200:
        part = stack.pop(0)
        seen += 1
        try:
            content_type = part.get_content_type()
            payload = part.get_payload()
        except Exception as exc:  # a broken part of a DSN: look at the others
            log.debug("skipping an unreadable part of a DSN: %s", exc)
            continue
        if content_type in _RETURNED_PARTS:
            headers = None
            if isinstance(payload, list) and payload:  # message/rfc822: the parsed copy
                headers = payload[0]
            elif isinstance(payload, str):  # text/rfc822-headers: just the header lines
                try:
                    headers = BytesHeaderParser(policy=compat32).parsebytes(
                        part.get_payload(decode=True) or payload.encode("utf-8", "replace"))
                except Exception:
                    headers = None
            if headers is not None:
                values = [str(v) for v in (headers.get_all("Message-ID") or [])]
                for value in parse_message_ids(values):
                    if value not in found:
                        found.append(value)
            continue
        if part.is_multipart() and isinstance(payload, list):
            stack.extend(payload)
    return found[:MAX_BOUNCED_IDS]


def _iso(value) -> str:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    return str(value)


def replace_inbox(session: Session, inbox_id: str, channel_addresses: list[str], member_emails: list[str]) -> None:
    """Apply conversations' inbox_updated: our copy of an inbox's addresses and members."""
    session.query(Channel).filter(Channel.inbox_id == inbox_id).delete()
    session.query(TrustedSender).filter(TrustedSender.inbox_id == inbox_id).delete()
    for address in {a for a in map(try_normalise_email, channel_addresses) if a}:
        session.merge(Channel(address=address, inbox_id=inbox_id))
    for email in {a for a in map(try_normalise_email, member_emails) if a}:
        session.merge(TrustedSender(email=email, inbox_id=inbox_id))


def restore_attachment(blobs: DirectoryBlobStore, raw_key: str, sha256: str) -> bytes | None:
    """Extract an attachment again from its (durable) raw message and store it back."""
    for attachment in parse_message(blobs.get(raw_key)).attachments:
        if hashlib.sha256(attachment.payload).hexdigest() == sha256:
            blobs.put(attachment.payload, durable=False)
            return attachment.payload
    return None
