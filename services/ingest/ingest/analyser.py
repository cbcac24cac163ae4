"""Where a stored message is analysed: in a parser worker process with a hard deadline, never on
the service's event loop.

`analyse_stored(job)` is the whole CPU-bound part of processing one message — read the raw bytes,
parse, classify, detect a forward, store the attachments, sanitise the HTML, build and validate the
`message_received` envelope — and runs in a `WorkerPool` child (`ParserPool`). The service only
claims rows before and writes the outcome after. A message that takes longer than its deadline
has its worker killed and replaced; one that crashes its worker (memory limit) fails alone.

`InProcessAnalyser` runs the same function in the calling process, for unit tests of the use
cases (SQLite, no child processes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ingest.blobstore import BlobNotFound, BlobStoreUnavailable, S3Location, open_blob_store
from ingest.dkim_dns import txt_lookup
from ingest.domain.analysis import AnalysisSettings, analyse, render_html
from ingest.domain.bounces import bounced_message_ids, bounced_recipients
from ingest.domain.classify import internal_forward
from ingest.domain.downloads import attachment_url, raw_url
from ingest.domain.model import ParseLimits
from ingest.domain.parsing import MessageTooComplex, parse_message
from ingest.domain.return_path import return_path
from ingest.full_message import FullMessageJob, render_full_message
from ingest.worker_pool import Outcome, WorkerPool
from mailroom_shared.events.envelope import build_envelope
from mailroom_shared.events.tracing import intake_traceparent

TEXT_LIMIT = 1_000_000  # characters of text/plain carried in the event; the raw message has it all
WORKER_TARGET = "ingest.analyser:work"


@dataclass(frozen=True)
class AnalysisJob:
    """Everything a worker needs for one intake row; no database, no settings of its own."""

    intake_id: str
    channel_address: str
    via: str
    reply_token: str | None
    size: int
    received_at: str | None
    blob_dir: str
    blob_key: str
    analysis: AnalysisSettings
    trusted_senders: frozenset[str]
    inbox_of: dict[str, str] = field(default_factory=dict)
    event_version: int = 1
    team_mailbox: bool = False  # fetched over IMAP from a mailbox configured as the team's own
    dns_resolver: tuple[str, ...] = ()  # INGEST_DNS_RESOLVER, for DKIM keys (INGEST_VERIFY_DKIM)
    blob_s3: S3Location | None = None  # the bucket when INGEST_BLOB_STORE=s3 (then blob_dir is unused)
    envelope_from: str | None = None  # the SMTP MAIL FROM (None: not received over SMTP)


class StoredMessageMissing(Exception):
    """The raw bytes are not (yet) readable: worth another attempt later."""


def analyse_stored(job: AnalysisJob) -> dict:
    """{"envelope": the validated message_received envelope, "attachments": for the intake row}.
    Raises MessageTooComplex for a message over the parse limits, StoredMessageMissing when the
    raw bytes cannot be read, anything else for a message that breaks the analysis."""
    blobs = open_blob_store(job.blob_s3 or Path(job.blob_dir))
    try:
        raw = blobs.get(job.blob_key)
    except (BlobNotFound, OSError) as exc:
        raise StoredMessageMissing(f"raw message {job.blob_key} unreadable: {exc!r}") from None
    # DKIM keys are looked up here, in the worker: its deadline bounds the wait
    lookup = txt_lookup(job.dns_resolver) if job.analysis.authentication.verify_dkim else None
    analysis = analyse(raw, job.analysis, trusted_senders=job.trusted_senders,
                       team_mailbox=job.via == "imap" and job.team_mailbox, dkim_lookup=lookup)
    parsed = analysis.parsed
    attachments, cid_urls = [], {}
    for attachment in parsed.attachments:
        # not fsynced: an attachment can always be extracted again from the (fsynced) raw message
        sha = blobs.put(attachment.payload, durable=False)
        url = attachment_url(job.intake_id, sha)
        if attachment.content_id:
            cid_urls[attachment.content_id] = url
        attachments.append({"filename": attachment.filename, "content_type": attachment.content_type,
                            "size": attachment.size, "sha256": sha, "disposition": attachment.disposition,
                            "content_id": attachment.content_id, "url": url})
    html, truncated, blocked = render_html(parsed, cid_urls, job.analysis.html_preview_bytes)
    forward = analysis.forward
    classification = internal_forward(analysis.classification, parsed.sender.email if parsed.sender else None,
                                      job.channel_address, job.inbox_of)
    data = {
        "intake_id": job.intake_id, "channel_address": job.channel_address, "via": job.via,
        "message_id": analysis.message_id, "subject": parsed.subject or "",
        "date": parsed.date.isoformat() if parsed.date else None,
        "sender": parsed.sender.as_dict() if parsed.sender else None,
        "attributed_to": analysis.attributed_to.as_dict(),
        "reply_to": [a.as_dict() for a in parsed.reply_to], "to": [a.as_dict() for a in parsed.to],
        "cc": [a.as_dict() for a in parsed.cc], "in_reply_to": parsed.in_reply_to,
        "references": parsed.references, "reply_token": job.reply_token,
        "text": (parsed.text or "")[:TEXT_LIMIT] or None, "html": html, "html_truncated": truncated,
        "remote_images_blocked": blocked, "size": job.size, "raw_url": raw_url(job.intake_id),
        "attachments": attachments,
        "flags": {"auto_submitted": classification.auto_submitted, "bounce": classification.bounce,
                  "spam": classification.spam, "loop": classification.loop,
                  "reasons": list(classification.reasons)},
        "forward": None if forward is None else {
            **analysis.forward_metadata(),
            "forwarded_by": (parsed.sender.as_dict() if parsed.sender else {"name": None, "email": None})},
        "received_at": job.received_at,
        "bounced_message_ids": bounced_message_ids(parsed.message) if classification.bounce else [],
        "bounced_recipients": bounced_recipients(parsed.message) if classification.bounce else [],
        "return_path": return_path(job.envelope_from, parsed.message),
    }
    # built (and validated) here, off the service's event loop: an event the catalogue refuses
    # quarantines its message instead of failing the batch again and again
    # the message's trace starts here, derived from its intake id (mailroom_shared.events.tracing)
    envelope = build_envelope("message_received", job.intake_id, data, version=job.event_version,
                              traceparent=intake_traceparent(job.intake_id))
    return {"envelope": envelope, "attachments": attachments}


@dataclass(frozen=True)
class PreviewJob:
    """The sanitised HTML preview of a stored message, made again from its raw bytes (for
    `?images=load`): as costly as the analysis, so it runs in the same workers."""

    blob_dir: str
    blob_key: str
    cid_urls: dict[str, str]
    limits: ParseLimits
    html_preview_bytes: int
    allow_remote_images: bool
    blob_s3: S3Location | None = None  # as AnalysisJob's


def render_preview(job: PreviewJob) -> dict:
    raw = open_blob_store(job.blob_s3 or Path(job.blob_dir)).get(job.blob_key)
    parsed = parse_message(raw, job.limits)
    html, truncated, blocked = render_html(parsed, job.cid_urls, job.html_preview_bytes,
                                           allow_remote_images=job.allow_remote_images)
    return {"html": html, "truncated": truncated, "remote_images_blocked": blocked}


def work(job: AnalysisJob | PreviewJob) -> dict:
    """What a parser worker process runs."""
    if isinstance(job, FullMessageJob):  # "View full message" (full_message.py)
        return render_full_message(job)
    return analyse_stored(job) if isinstance(job, AnalysisJob) else render_preview(job)


# --- what an outcome means for the intake row ------------------------------------------------------

RETRY = "retry"
QUARANTINE = "quarantine"
DONE = "done"


def verdict(outcome: Outcome) -> tuple[str, str | None]:
    """(DONE | QUARANTINE | RETRY, reason). Deterministic failures quarantine at once; a worker
    that died or bytes that could not be read are tried again (up to INGEST_MAX_ATTEMPTS)."""
    if outcome.ok:
        return DONE, None
    if outcome.kind == "timeout":
        return QUARANTINE, f"too complex to parse safely: analysis {outcome.error}"
    if outcome.kind == "crashed":
        return RETRY, outcome.error
    if outcome.error_type == MessageTooComplex.__name__:
        return QUARANTINE, f"too complex to parse safely: {outcome.error}"
    if outcome.error_type == "MemoryError":
        return QUARANTINE, f"too complex to parse safely: {outcome.error}"
    if outcome.error_type in (StoredMessageMissing.__name__, BlobStoreUnavailable.__name__):
        return RETRY, outcome.error  # the store, not the message (e.g. an attachment's PUT failed)
    return QUARANTINE, f"processing failed: {outcome.error_type}: {outcome.error}"


# --- who runs it ----------------------------------------------------------------------------------

class Analyser(Protocol):
    def as_completed(self, jobs: list[AnalysisJob],
                     quiet_after: float = 0.2) -> Iterator[tuple[int, Outcome] | None]: ...

    def run(self, job: AnalysisJob | PreviewJob) -> Outcome: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


class ParserPool:
    """The service's parser workers (INGEST_PARSE_WORKERS processes, each call killed after
    INGEST_MAX_PARSE_SECONDS, each process limited to INGEST_PARSE_MEMORY_MB)."""

    def __init__(self, workers: int, deadline_seconds: float, memory_limit_mb: int | None):
        self.pool = WorkerPool(WORKER_TARGET, size=workers, timeout=deadline_seconds,
                               memory_limit_mb=memory_limit_mb)

    def as_completed(self, jobs: list[AnalysisJob], quiet_after: float = 0.2) -> Iterator[tuple[int, Outcome] | None]:
        """(index, outcome) as each job finishes, in any order; `None` whenever nothing finished
        for `quiet_after` seconds, so the caller can commit what is done instead of holding it
        back behind one slow message."""
        return self.pool.as_completed(jobs, quiet_after)

    def run(self, job: AnalysisJob | PreviewJob) -> Outcome:
        return self.pool.run(job)

    def start(self) -> None:
        self.pool.start()

    def close(self) -> None:
        self.pool.close()

    @property
    def replaced(self) -> int:
        return self.pool.replaced


class InProcessAnalyser:
    """The same analysis in this process and without a deadline: unit tests and tools only."""

    replaced = 0

    def as_completed(self, jobs: list[AnalysisJob], quiet_after: float = 0.2) -> Iterator[tuple[int, Outcome] | None]:
        for index, job in enumerate(jobs):
            yield index, self.run(job)

    def run(self, job: AnalysisJob | PreviewJob) -> Outcome:
        try:
            return Outcome(True, value=work(job))
        except Exception as exc:
            return Outcome(False, kind="raised", error_type=type(exc).__name__, error=str(exc)[:2000])

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

