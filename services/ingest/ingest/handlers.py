"""Ingest's use cases: accept raw mail durably; process it into `message_received` or quarantine
it; keep our copy of the inboxes; record how a mailbox poll went.

Accepting is cheap and happens before SMTP answers 250 (raw bytes fsynced, intake row
committed). Processing (parse, classify, forward detection) happens after, in the service's
intake processor, so a slow or hostile message never holds an SMTP session open, and a crash
loses nothing: rows in status `stored` are picked up again.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field

from sqlalchemy import or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ingest.analyser import DONE, QUARANTINE, Analyser, AnalysisJob, PreviewJob, verdict
from ingest.blobstore import BlobStore, open_blob_store
from ingest.domain.analysis import AnalysisSettings, dedupe_key
from ingest.domain.downloads import raw_url
from ingest.domain.recipients import split_recipient
from ingest.domain.summary import SUMMARY_HEADER_BYTES, summarise
from ingest.models import Channel, Intake, MailboxCursor, TrustedSender
from ingest.settings import Settings, team_mailbox_channels
from ingest.worker_pool import Outcome
from mailroom_shared import observability
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.caching import Expiring
from mailroom_shared.db import Database, is_postgres, utcnow
from mailroom_shared.events.delivery_reports import delivery_report, is_delivery_report
from mailroom_shared.events.tracing import intake_traceparent
from mailroom_shared.http import HttpError, NotFound, PayloadTooLarge, ServiceUnavailable
from mailroom_shared.messaging.outbox import Outbox
from mailroom_shared.text import iso_time

log = logging.getLogger(__name__)

INTAKE_NOTIFY_CHANNEL = "mailroom_ingest_intake"  # PostgreSQL LISTEN/NOTIFY: mail was stored


# --- accepting mail (SMTP listener, HTTP, IMAP) ------------------------------------------------------

@dataclass
class AcceptResult:
    intake_ids: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # channels that already had this message
    unknown_recipients: list[str] = field(default_factory=list)


class MessageTooLarge(ValueError):
    pass


def accept(database: Database, blobs: BlobStore, raw: bytes, recipients: list[str], via: str,
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
            observability.INTAKE_MESSAGES.labels(via, "rejected").inc()
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
            observability.INTAKE_MESSAGES.labels(via, "duplicate").inc()
            continue
        result.intake_ids.append(intake_id)
        observability.INTAKE_MESSAGES.labels(via, "stored").inc()
    return result


def accept_posted(database: Database, blobs: BlobStore, raw: bytes, address: str,
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
    """The oldest stored rows nobody is analysing (no lease, or a lease that ran out: its
    processor died), locked; rows another replica holds are skipped, not waited for."""
    query = (select(Intake)
             .where(Intake.status == "stored", or_(Intake.claimed_until.is_(None), Intake.claimed_until < utcnow()))
             .order_by(Intake.received_at, Intake.id).limit(limit))
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    return list(session.execute(query).scalars())


def process_batch(database: Database, outbox: Outbox, settings: Settings, analyser: Analyser,
                  directory: InboxDirectory | None = None, limit: int = 1) -> int:
    """Process up to `limit` stored intake rows; how many were taken (0: none waiting).

    1. Claim them in a short transaction: each attempt is counted before the analysis and a
       lease keeps other processors off; a row past INGEST_MAX_ATTEMPTS is quarantined instead
       (a message that crashed or hung its processor is never taken first again forever).
    2. Analyse them outside any transaction, in the parser workers (hard deadline per message).
    3. Write each outcome as it comes: everything finished is committed together (one INSERT of
       events), and whenever one message is still running after the rest, what is done is
       committed without waiting for it. A write that fails is retried message by message, so
       one row never rolls back the others."""
    directory = directory or InboxDirectory(ttl=0)
    jobs = _claim(database, outbox, settings, directory, limit)
    if not jobs:
        return 0
    pending = [job for job in jobs if job is not None]
    finished: list[tuple[AnalysisJob, Outcome]] = []
    for item in analyser.as_completed(pending):
        if item is None:  # one is still running: commit the others now
            _write(database, outbox, settings, finished)
            finished = []
            continue
        index, outcome = item
        finished.append((pending[index], outcome))
    _write(database, outbox, settings, finished)
    return len(jobs)


def _claim(database: Database, outbox: Outbox, settings: Settings, directory: InboxDirectory,
           limit: int) -> list[AnalysisJob | None]:
    """The jobs of the claimed rows (None for a row quarantined here for too many attempts)."""
    now = utcnow()
    lease = dt.timedelta(seconds=settings.limits.max_seconds * 2 + 30)
    jobs: list[AnalysisJob | None] = []
    with database.transaction() as session:
        claimed = _claim_stored(session, limit)
        if not claimed:
            return jobs
        inboxes = directory.get(session)
        analysis = AnalysisSettings(
            own_addresses=inboxes.own, own_message_id_domain=settings.own_message_id_domain,
            internal_domains=settings.internal_domains, authentication=settings.authentication,
            spam_score_headers=settings.spam_score_headers,
            limits=settings.limits, html_preview_bytes=settings.html_preview_bytes)
        team_channels = team_mailbox_channels(settings)
        exhausted = []
        for intake in claimed:
            intake.attempts = (intake.attempts or 0) + 1
            intake.claimed_until = now + lease
            if intake.attempts > settings.max_attempts:
                last = intake.reason or "the processor stopped while analysing it"
                exhausted.append(_quarantine(outbox, settings, intake, f"processing failed {intake.attempts - 1} "
                                             f"times (INGEST_MAX_ATTEMPTS); last: {last}"))
                jobs.append(None)
                continue
            jobs.append(AnalysisJob(
                intake_id=intake.id, channel_address=intake.channel_address, via=intake.via,
                reply_token=intake.reply_token, size=intake.size, received_at=iso_time(intake.received_at),
                blob_dir=str(settings.blob_dir), blob_s3=settings.blob_s3, blob_key=intake.blob_key, analysis=analysis,
                # another of our inboxes forwards as a member would
                trusted_senders=inboxes.trusted | inboxes.own, inbox_of=inboxes.inbox_of,
                event_version=outbox.version_of("message_received"),
                team_mailbox=intake.via == "imap" and intake.channel_address in team_channels,
                dns_resolver=settings.dns_resolver, envelope_from=intake.envelope_from))
        outbox.record_envelopes(session, exhausted)
    return jobs


def _write(database: Database, outbox: Outbox, settings: Settings,
           finished: list[tuple[AnalysisJob, Outcome]]) -> None:
    if not finished:
        return
    try:
        with database.transaction() as session:
            _apply(session, outbox, settings, finished)
        return
    except Exception:
        if len(finished) == 1:
            log.exception("intake %s: its outcome could not be written; it is taken again after its lease",
                          finished[0][0].intake_id)
            return
        log.exception("writing %d outcomes failed; writing them one by one", len(finished))
    for one in finished:
        _write(database, outbox, settings, [one])


def _apply(session: Session, outbox: Outbox, settings: Settings,
           finished: list[tuple[AnalysisJob, Outcome]]) -> None:
    ids = [job.intake_id for job, _ in finished]
    query = select(Intake).where(Intake.id.in_(ids))
    if is_postgres(session):
        query = query.with_for_update()
    rows = {row.id: row for row in session.execute(query).scalars()}
    envelopes = []
    for job, outcome in finished:
        intake = rows.get(job.intake_id)
        if intake is None or intake.status != "stored":
            continue  # settled meanwhile (another processor took it after our lease ran out)
        kind, reason = verdict(outcome)
        if kind == DONE:
            intake.status, intake.processed_at, intake.claimed_until = "processed", utcnow(), None
            intake.reason = None
            intake.attachments = outcome.value["attachments"]
            envelopes.append(("message_received", outcome.value["envelope"]))
            report = delivery_report_envelope(outbox, outcome.value["envelope"])
            if report is not None:
                envelopes.append(("delivery_report_received", report))
            observability.INTAKE_MESSAGES.labels(intake.via, "processed").inc()
        elif kind == QUARANTINE or intake.attempts >= settings.max_attempts:
            if kind != QUARANTINE:
                reason = f"processing failed {intake.attempts} times (INGEST_MAX_ATTEMPTS); last: {reason}"
            log.warning("quarantining intake %s: %s", intake.id, reason)
            envelopes.append(_quarantine(outbox, settings, intake, reason))
        else:  # worth another attempt, after a pause that grows with each one
            log.warning("intake %s: attempt %d failed (%s); trying again later", intake.id, intake.attempts, reason)
            intake.reason = reason[:2000]
            intake.claimed_until = utcnow() + dt.timedelta(seconds=min(300, 5 * 2 ** intake.attempts))
    outbox.record_envelopes(session, envelopes)


def delivery_report_envelope(outbox: Outbox, message_received: dict) -> dict | None:
    """For a bounce report, the small event outbound subscribes to (it matches bounces to the
    emails it sent and needs none of the report's content); None for any other message. Same
    subject and trace as the message_received it comes with."""
    data = message_received["data"]
    if not is_delivery_report(data):
        return None
    return outbox.envelope("delivery_report_received", message_received["subject"], delivery_report(data),
                           traceparent=intake_traceparent(data["intake_id"]))


def _quarantine(outbox: Outbox, settings: Settings, intake: Intake, reason: str) -> tuple[str, dict]:
    """The row quarantined with `reason`; the event carries what its headers say when they can be
    read safely, so the message still shows in its inbox (as not displayable)."""
    observability.INTAKE_MESSAGES.labels(intake.via, "quarantined").inc()
    observability.QUARANTINED.labels(quarantine_kind(reason)).inc()
    intake.status = "quarantined"
    intake.reason = reason[:2000]
    intake.processed_at = utcnow()
    intake.claimed_until = None
    try:
        summary = summarise(open_blob_store(settings.blob_location).head(intake.blob_key, SUMMARY_HEADER_BYTES),
                            settings.spam_score_headers)
    except Exception:  # the raw bytes themselves are unreadable: placeholders in the inbox
        log.warning("intake %s: no summary of its headers", intake.id, exc_info=True)
        summary = {"message_id": None, "subject": None, "sender": None, "date": None, "in_reply_to": [],
                   "references": [], "spam": False}
    return "message_quarantined", outbox.envelope("message_quarantined", intake.id, {
        "intake_id": intake.id, "channel_address": intake.channel_address, "via": intake.via,
        "reason": intake.reason, "size": intake.size, "raw_url": raw_url(intake.id),
        "message_id": summary["message_id"], "subject": summary["subject"], "sender": summary["sender"],
        "date": summary["date"], "in_reply_to": summary["in_reply_to"], "references": summary["references"],
        "reply_token": intake.reply_token, "spam": summary["spam"], "received_at": iso_time(intake.received_at),
    }, traceparent=intake_traceparent(intake.id))


def quarantine_kind(reason: str) -> str:
    """A bounded label for the quarantine metric (the reason itself is free text)."""
    if "INGEST_MAX_ATTEMPTS" in reason:
        return "attempts_exhausted"
    if reason.startswith("too complex"):
        return "too_complex"
    return "processing_failed"


def render_preview(analyser: Analyser, settings: Settings, blob_key: str, cid_urls: dict[str, str],
                   allow_remote_images: bool) -> dict:
    """The sanitised HTML preview made again from the raw bytes, in a parser worker (the same
    deadline as the analysis: never on the event loop)."""
    outcome = analyser.run(PreviewJob(str(settings.blob_dir), blob_key, cid_urls, settings.limits,
                                      settings.html_preview_bytes, allow_remote_images, blob_s3=settings.blob_s3))
    if not outcome.ok:
        raise ServiceUnavailable(f"the preview could not be made again: {outcome.error_type or outcome.kind}: "
                                 f"{outcome.error}")
    return outcome.value


def retry_quarantined(session: Session, intake_ids: list[str] | None = None,
                      reason_contains: str | None = None) -> list[str]:
    """Quarantined messages back to `stored` with a fresh attempt budget (after an upgrade that
    can process them): the ones named, or all (those whose reason contains `reason_contains`).
    The ids taken; unknown or not quarantined ids are left out. The intake processor takes them
    at its next pass; what goes through fills in the inbox's placeholder."""
    query = select(Intake).where(Intake.status == "quarantined")
    if intake_ids is not None:
        query = query.where(Intake.id.in_(intake_ids))
    if reason_contains:
        query = query.where(Intake.reason.contains(reason_contains, autoescape=True))
    taken = []
    for intake in session.execute(query.with_for_update()).scalars():
        intake.status, intake.attempts, intake.claimed_until = "stored", 0, None
        intake.reason = f"re-run after: {intake.reason or ''}"[:2000]
        taken.append(intake.id)
    if taken and is_postgres(session):  # delivered on commit: the intake processors wake at once
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": INTAKE_NOTIFY_CHANNEL})
    return taken


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
