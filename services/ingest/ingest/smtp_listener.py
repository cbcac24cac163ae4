"""The SMTP listener (aiosmtpd), a process of its own: `mailroom-smtp` / `python -m ingest.smtp_listener`.

It is the public face of ingest, so it refuses early and clearly:
- RCPT only for configured inbox channel addresses (550 otherwise: never an open relay), at most
  INGEST_SMTP_MAX_RECIPIENTS of them per message (452);
- per client IP: at most INGEST_SMTP_MAX_CONNECTIONS_PER_IP connections at once and
  INGEST_SMTP_MAX_MESSAGES_PER_MINUTE_PER_IP messages (MAIL commands) a minute, past which it
  answers 421 and closes the connection (the sender retries later); clients in
  INGEST_SMTP_LIMITS_EXEMPT (loopback by default: tools on this machine, the organisation's relay
  when listed) are not counted;
- STARTTLS with INGEST_SMTP_TLS_CERT / INGEST_SMTP_TLS_KEY, required before MAIL (530) with
  INGEST_SMTP_REQUIRE_TLS;
- a size limit advertised with SIZE and enforced (552);
- `250` only after the raw bytes are fsynced and the intake row committed; any storage failure
  answers 451 so the sending server retries (nothing is lost). Under load the intake rows of the
  messages whose DATA ended while the previous commit ran are committed together (`GroupCommit`:
  one transaction, one WAL flush, one NOTIFY for all of them), and each session still answers only
  once its own row is committed.
Parsing happens later in the ingest service, never inside the SMTP session.

Metrics (prometheus_client, on INGEST_SMTP_METRICS_PORT when set): messages by outcome, commands
refused by reason, bytes accepted, the time from the end of DATA to durable, messages per commit;
the same port answers /health/live (the event loop turns) and /health/ready (listening, database
up at the expected schema) for the probes.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import ipaddress
import json
import logging
import os
import signal
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import prometheus_client
from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client import Counter, Histogram
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite

from ingest import SERVICE_NAME, handlers, queries
from ingest.blobstore import BlobStore, open_blob_store
from ingest.domain.analysis import dedupe_key
from ingest.domain.recipients import split_recipient
from ingest.models import Intake
from ingest.settings import Settings
from ingest.settings import load as load_settings
from mailroom_shared import config, migrations, observability
from mailroom_shared.caching import Expiring
from mailroom_shared.db import Database, is_postgres, utcnow
from mailroom_shared.events.tracing import derived_trace_id

log = logging.getLogger("ingest.smtp")

CHANNEL_CACHE_SECONDS = 2.0
RATE_WINDOW_SECONDS = 60.0
MAX_GROUP_COMMIT = 64  # messages committed together at most
METRICS_PORT_ENV = "INGEST_SMTP_METRICS_PORT"  # /metrics, /health/live, /health/ready
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
STOP_GRACE_SECONDS = 25.0  # sessions in DATA finish within it (under Kubernetes' default 30 s)

SMTP_MESSAGES = Counter(
    "mailroom_smtp_messages_total",
    "Messages at the end of DATA by outcome: accepted (250, stored), duplicate (250, already stored), "
    "rejected (5xx), deferred (4xx: storage failed, the sender retries).", ("outcome",))
SMTP_REFUSED = Counter(
    "mailroom_smtp_refused_total",
    "Connections and commands the SMTP listener refused before DATA, by reason (relay_denied, "
    "too_many_recipients, too_many_messages, too_many_connections, not_configured, lookup_failed).", ("reason",))
SMTP_BYTES = Counter("mailroom_smtp_received_bytes_total", "Bytes of the messages answered 250.")
SMTP_STORE_SECONDS = Histogram(
    "mailroom_smtp_store_duration_seconds", "End of DATA → the message durable (what its 250 waits for).",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
SMTP_COMMIT_BATCH = Histogram(
    "mailroom_smtp_commit_batch_messages", "Messages whose intake rows one commit made durable (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64))


class ChannelCache:
    """Inbox addresses, re-read from the database at most every few seconds."""

    def __init__(self, database: Database):
        self.database = database
        self._channels = Expiring(CHANNEL_CACHE_SECONDS, set())

    def get(self) -> set[str]:
        return self._channels.get(self._load)

    def _load(self) -> set[str]:
        with self.database.transaction() as session:
            return queries.known_channels(session)


class ClientLimits:
    """Per-client-IP counters of one listener process (one event loop: no locks): connections
    open now, and MAIL commands in the last minute. 0 means no limit."""

    def __init__(self, max_connections: int, max_messages_per_minute: int, exempt: tuple[str, ...] = (),
                 clock=time.monotonic):
        self.max_connections = max_connections
        self.max_messages = max_messages_per_minute
        self.exempt = tuple(ipaddress.ip_network(n, strict=False) for n in exempt)
        self.clock = clock
        self.connections: collections.Counter[str] = collections.Counter()
        self.messages: dict[str, collections.deque[float]] = {}

    def is_exempt(self, ip: str | None) -> bool:
        if ip is None:
            return True  # not an IP connection (a Unix socket): nothing to count by
        try:
            address = ipaddress.ip_address(ip.split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.exempt)

    def connect(self, ip: str | None) -> bool:
        """Count a new connection; False (not counted) when the client has too many already."""
        if self.is_exempt(ip):
            return True
        if self.max_connections and self.connections[ip] >= self.max_connections:
            return False
        self.connections[ip] += 1
        return True

    def disconnect(self, ip: str | None) -> None:
        if self.is_exempt(ip) or ip not in self.connections:
            return
        self.connections[ip] -= 1
        if self.connections[ip] <= 0:
            del self.connections[ip]

    def message(self, ip: str | None) -> bool:
        """Count a message (a MAIL command); False when the client sent too many this minute."""
        if not self.max_messages or self.is_exempt(ip):
            return True
        now = self.clock()
        recent = self.messages.setdefault(ip, collections.deque())
        while recent and recent[0] <= now - RATE_WINDOW_SECONDS:
            recent.popleft()
        if len(recent) >= self.max_messages:
            return False
        recent.append(now)
        if len(self.messages) > 10_000:  # forget clients that sent nothing for a minute
            for other in [k for k, v in self.messages.items() if not v or v[-1] <= now - RATE_WINDOW_SECONDS]:
                del self.messages[other]
        return True


def _client_ip(peer) -> str | None:
    return peer[0] if isinstance(peer, tuple) and peer else None


@dataclass
class _Pending:
    raw: bytes
    recipients: list[str]
    envelope_from: str | None
    channels: set[str]
    future: asyncio.Future
    result: handlers.AcceptResult = field(default_factory=handlers.AcceptResult)
    rows: list[dict] = field(default_factory=list)
    error: BaseException | None = None


class GroupCommit:
    """Makes messages durable with as few commits as the load allows. Each session writes its raw
    bytes to the blob store itself (fsynced, in parallel with the others); the intake rows then
    go through one transaction at a time: while one commits, the rows of the messages that become
    ready meanwhile wait and form the next (one transaction, one WAL flush, one NOTIFY for all).
    Alone, a message is committed at once (nobody waits for company); under load, N sessions
    share one commit. A session's answer waits for its own batch's commit. If that transaction
    fails, each message of the batch is stored alone (handlers.accept), so one bad row never costs
    the others their 250."""

    def __init__(self, database: Database, blobs, settings: Settings, max_batch: int = MAX_GROUP_COMMIT):
        self.database = database
        self.blobs = blobs  # the blob store: put(raw) → key, durable when it returns
        self.settings = settings
        self.max_batch = max_batch
        self._waiting: list[_Pending] = []
        self._running = False
        self.commits = 0  # transactions that stored a batch (tests read it)

    async def accept(self, raw: bytes, recipients: list[str], envelope_from: str | None,
                     channels: set[str]) -> handlers.AcceptResult:
        loop = asyncio.get_running_loop()
        pending = _Pending(raw, recipients, envelope_from, channels, loop.create_future())
        await loop.run_in_executor(None, self._prepare, pending)  # blob fsynced; raises for this one alone
        if not pending.rows:
            return pending.result
        return await self._commit(pending)

    async def _commit(self, pending: _Pending) -> handlers.AcceptResult:
        """Wait for the transaction that commits `pending`'s rows (with whatever else is ready)."""
        loop = asyncio.get_running_loop()
        self._waiting.append(pending)
        if not self._running:
            self._running = True
            loop.create_task(self._drain())
        return await pending.future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
                try:
                    await loop.run_in_executor(None, self._store, batch)
                except Exception as exc:  # noqa: BLE001 - every session of the batch is told
                    for pending in batch:
                        pending.error = pending.error or exc
                for pending in batch:
                    if pending.future.done():
                        continue
                    if pending.error is not None:
                        pending.future.set_exception(pending.error)
                    else:
                        pending.future.set_result(pending.result)
        finally:
            self._running = False

    def _store(self, stored: list[_Pending]) -> None:
        """In an executor thread: one transaction for the rows of every message of the batch."""
        try:
            inserted = self._insert([row for pending in stored for row in pending.rows])
        except Exception:
            log.warning("group commit of %d messages failed; storing them one by one", len(stored), exc_info=True)
            for pending in stored:
                pending.result = handlers.AcceptResult()
                try:
                    pending.result = handlers.accept(self.database, self.blobs, pending.raw, pending.recipients,
                                                     "smtp", self.settings, envelope_from=pending.envelope_from,
                                                     channels=pending.channels)
                except Exception as exc:  # noqa: BLE001 - 451 for this one
                    pending.error = exc
            return
        self.commits += 1
        SMTP_COMMIT_BATCH.observe(len(stored))
        for pending in stored:
            for row in pending.rows:
                if row["id"] in inserted:
                    pending.result.intake_ids.append(row["id"])
                    observability.INTAKE_MESSAGES.labels("smtp", "stored").inc()
                else:  # the channel already had it (or an earlier message of this batch was it)
                    pending.result.duplicates.append(row["channel_address"])
                    observability.INTAKE_MESSAGES.labels("smtp", "duplicate").inc()

    def _prepare(self, pending: _Pending) -> None:
        """As handlers.accept does before its transaction: the channels addressed, the raw bytes
        durable in the blob store, one intake row per channel."""
        raw = pending.raw
        if len(raw) > self.settings.max_message_bytes:
            raise handlers.MessageTooLarge(
                f"message of {len(raw)} bytes exceeds the {self.settings.max_message_bytes} byte limit")
        targets: dict[str, str | None] = {}
        for recipient in pending.recipients:
            resolved = split_recipient(recipient, pending.channels)
            if resolved is None:
                pending.result.unknown_recipients.append(recipient)
                observability.INTAKE_MESSAGES.labels("smtp", "rejected").inc()
            else:
                targets.setdefault(resolved[0], resolved[1])
        if not targets:
            return
        blob_key = self.blobs.put(raw)
        key = dedupe_key(raw)
        now = utcnow()
        pending.rows = [{"id": str(uuid.uuid4()), "channel_address": channel, "reply_token": token, "via": "smtp",
                         "dedupe_key": key, "blob_key": blob_key, "size": len(raw),
                         "envelope_from": pending.envelope_from, "status": "stored", "attempts": 0,
                         "received_at": now} for channel, token in targets.items()]

    def _insert(self, rows: list[dict]) -> set[str]:
        """One transaction: every row that is not a duplicate (channel, dedupe key), and one
        NOTIFY on PostgreSQL; the ids inserted."""
        with self.database.transaction() as session:
            postgres = is_postgres(session)
            insert = (postgresql.insert if postgres else sqlite.insert)(Intake)
            statement = insert.values(rows).on_conflict_do_nothing(
                index_elements=["channel_address", "dedupe_key"]).returning(Intake.id)
            inserted = set(session.execute(statement).scalars())
            if postgres and inserted:  # delivered on commit: wakes the intake processors at once
                session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": handlers.INTAKE_NOTIFY_CHANNEL})
        return inserted


class IntakeHandler:
    def __init__(self, database: Database, blobs: BlobStore, settings: Settings):
        self.database = database
        self.blobs = blobs
        self.settings = settings
        self.channels = ChannelCache(database)
        self.limits = ClientLimits(settings.smtp_max_connections_per_ip, settings.smtp_max_messages_per_minute_per_ip,
                                   settings.smtp_limits_exempt)
        self.group_commit = GroupCommit(database, blobs, settings)
        self.sessions: set[IntakeSMTP] = set()  # the connections open now
        self.stopping = False

    async def close_sessions(self, timeout: float = STOP_GRACE_SECONDS) -> None:
        """The graceful stop: idle sessions are closed at once (421; nothing of theirs was accepted),
        sessions in DATA finish storing their message and get their answer, then are closed."""
        self.stopping = True
        for session in list(self.sessions):
            if not session.in_data:
                session.close_with_421("Service shutting down")
        busy = [s._handler_coroutine for s in self.sessions if s._handler_coroutine is not None]  # noqa: SLF001
        if busy:
            _, unfinished = await asyncio.wait(busy, timeout=timeout)
            if unfinished:  # asyncio.run cancels them: no 250 was sent, so nothing accepted is lost
                log.warning("%d SMTP sessions still in DATA after %gs; cut off", len(unfinished), timeout)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options):
        if not self.limits.message(_client_ip(session.peer)):
            log.warning("%s: over %d messages a minute; refused", session.peer, self.limits.max_messages)
            SMTP_REFUSED.labels("too_many_messages").inc()
            return "421 4.7.0 Too many messages from your address, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options):
        if len(envelope.rcpt_tos) >= self.settings.smtp_max_recipients:
            SMTP_REFUSED.labels("too_many_recipients").inc()
            return "452 4.5.3 Too many recipients"
        try:
            channels = await asyncio.get_running_loop().run_in_executor(None, self.channels.get)
        except Exception:
            log.exception("could not read inbox addresses")
            SMTP_REFUSED.labels("lookup_failed").inc()
            return "451 4.3.0 Temporary failure, please try again later"
        if not channels:
            # A fresh system that has not yet heard of any inbox: ask the sender to retry
            # rather than bounce mail that will be deliverable in a moment.
            SMTP_REFUSED.labels("not_configured").inc()
            return "450 4.3.2 Inboxes not configured yet, please try again later"
        if split_recipient(address, channels) is None:
            SMTP_REFUSED.labels("relay_denied").inc()
            return f"550 5.1.1 <{address}>: no inbox here with that address (relaying denied)"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope):
        raw = envelope.original_content or b""
        if not raw.strip():
            SMTP_MESSAGES.labels("rejected").inc()
            return "554 5.6.0 Empty message"
        began = time.monotonic()
        try:
            # the addresses RCPT was checked against (cached): no extra transaction per message;
            # committed with the other messages whose DATA ends meanwhile (GroupCommit)
            result = await self.group_commit.accept(raw, list(envelope.rcpt_tos), envelope.mail_from,
                                                    self.channels.get())
        except handlers.MessageTooLarge as exc:
            SMTP_MESSAGES.labels("rejected").inc()
            return f"552 5.3.4 {exc}"
        except Exception:
            log.exception("could not store a message from %s", envelope.mail_from)
            SMTP_MESSAGES.labels("deferred").inc()
            return "451 4.3.0 Temporary failure storing the message, please try again later"
        SMTP_STORE_SECONDS.observe(time.monotonic() - began)
        SMTP_MESSAGES.labels("accepted" if result.intake_ids else "duplicate").inc()
        SMTP_BYTES.inc(len(raw))
        ids = ",".join(result.intake_ids) or "duplicate"
        with observability.log_context(trace_id=",".join(map(derived_trace_id, result.intake_ids)) or None):
            log.info("accepted %d bytes from %s for %s as %s", len(raw), envelope.mail_from, envelope.rcpt_tos, ids)
        return f"250 2.0.0 OK queued as {ids}"


class IntakeSMTP(SMTP):
    """aiosmtpd's SMTP session, counted against the client's connection limit (421 and closed
    when over it, before the greeting); any 421 answer closes the connection (RFC 5321 §3.8)."""

    def __init__(self, handler: IntakeHandler, **kwargs):
        super().__init__(handler, **kwargs)
        self.limits = handler.limits
        self.intake = handler
        self.in_data = False  # from DATA's 354 until its answer is sent: a stop waits for it
        self._counted: str | None = None
        self._refused = False

    def connection_made(self, transport) -> None:
        first = self.transport is None and self._original_transport is None and not self._counted
        if first:  # not the same connection again after STARTTLS
            ip = _client_ip(transport.get_extra_info("peername"))
            if not self.limits.connect(ip):
                log.warning("%s: over %d connections; refused", ip, self.limits.max_connections)
                SMTP_REFUSED.labels("too_many_connections").inc()
                self._refused = True
                transport.write(f"421 4.7.0 {self.hostname} Too many connections from your address, "
                                "try again later\r\n".encode())
                transport.close()
                return
            self._counted = ip
        self.intake.sessions.add(self)
        super().connection_made(transport)

    def close_with_421(self, reason: str) -> None:
        if self.transport is not None:
            self.transport.write(f"421 4.3.2 {self.hostname} {reason}\r\n".encode())
            self.transport.close()

    def connection_lost(self, error) -> None:
        if self._refused:
            return
        self.intake.sessions.discard(self)
        if self._counted is not None:
            self.limits.disconnect(self._counted)
            self._counted = None
        super().connection_lost(error)

    def eof_received(self):
        if self._refused:
            return False
        return super().eof_received()

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's command method
        """aiosmtpd's DATA with the body read in blocks instead of line by line (its reader costs
        most of the listener's CPU per email: a readuntil, a debug log call and checks per line,
        docs/benchmarks.md); the same answers: 500 for a line over `line_length_limit`, 552 over
        `data_size_limit` (both after the whole body was read, as RFC 5321 § 4.2.5 implies), dots
        unstuffed (RFC 5321 § 4.5.2), then the handler's DATA hook."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        self.in_data = True
        try:
            await self._data()
        finally:
            self.in_data = False
        if self.intake.stopping:  # answered: nothing more is taken from this client
            self.close_with_421("Service shutting down")

    async def _data(self) -> None:
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            body, too_long, too_much = await _read_data(self._reader, self.line_length_limit, self.data_size_limit)
        except asyncio.CancelledError:
            log.info("Connection lost during DATA")
            self._writer.close()
            raise
        if body is None:  # the connection closed before the end of the data
            return
        if too_long or too_much:
            await self.push("500 Line too long (see RFC5321 4.5.3.1.6)" if too_long
                            else "552 Error: Too much mail data")
            self._set_post_data_state()
            return
        self.envelope.content = self.envelope.original_content = body
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)

    async def push(self, status) -> None:
        await super().push(status)
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else status
        if text.startswith("421") and self.transport is not None:
            self.transport.close()


_END_OF_DATA = b"\r\n.\r\n"


async def _read_data(reader: asyncio.StreamReader, line_limit: int, size_limit: int | None):
    """The DATA body up to the line holding a lone dot: (the body unstuffed, or None if the
    connection closed first; a line was over `line_limit` bytes with its CRLF; the body was over
    `size_limit`). Over the size limit, complete lines are checked and dropped as they come, so
    memory stays bounded whatever the client sends."""
    # buffer[:2] is always the CRLF before its first byte (at first, one that stands for the
    # start of the body): a lone dot on the first line and an empty body are found the same way
    buffer = bytearray(b"\r\n")
    dropped = 0  # body bytes read and dropped (over the size limit)
    too_long = False
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return None, False, False
        searched_from = max(0, len(buffer) - 4)
        buffer += chunk
        end = buffer.find(_END_OF_DATA, searched_from)
        if end >= 0:
            break
        if size_limit and dropped + len(buffer) - 2 > size_limit:
            last = buffer.rfind(b"\r\n")  # ≥ 0: the buffer starts with one
            too_long = too_long or _has_long_line(buffer[:last + 2], line_limit)
            dropped += last
            del buffer[:last]
            if len(buffer) - 2 > line_limit:  # a line without end: too long already, keep its tail only
                too_long = True
                dropped += len(buffer) - 5
                buffer[:] = b"\0\0" + buffer[-3:]
    leftover = bytes(buffer[end + len(_END_OF_DATA):])
    if leftover:  # commands the client sent after the dot without waiting: aiosmtpd reads them next
        reader._buffer[:0] = leftover  # noqa: SLF001 - StreamReader has no unread()
    data = bytes(buffer[:end + 2])  # the CRLF before, then every line with its CRLF
    too_long = too_long or _has_long_line(data, line_limit)
    too_much = bool(size_limit) and dropped + len(data) - 2 > size_limit
    if too_long or too_much:
        return b"", too_long, too_much
    return data.replace(b"\r\n.", b"\r\n")[2:], False, False


def _has_long_line(data: bytes | bytearray, line_limit: int) -> bool:
    """A line longer than `line_limit` bytes counting its CRLF (aiosmtpd's rule)."""
    if len(data) <= line_limit:
        return False
    return max(map(len, bytes(data).split(b"\r\n"))) + 2 > line_limit


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context for STARTTLS from INGEST_SMTP_TLS_CERT/_KEY; None when not set."""
    if settings.smtp_tls_cert is None or settings.smtp_tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(settings.smtp_tls_cert), str(settings.smtp_tls_key))
    return context


def build_server(handler: IntakeHandler, tls: ssl.SSLContext | None = None) -> SMTP:
    return IntakeSMTP(handler, data_size_limit=handler.settings.max_message_bytes, enable_SMTPUTF8=True,
                      decode_data=False, hostname=handler.settings.smtp_hostname, ident="mailroom ingest",
                      tls_context=tls, require_starttls=bool(tls) and handler.settings.smtp_require_tls)


class ListenerHealth:
    """The listener's own /health/live and /health/ready, served with /metrics (the services get
    theirs from the kit). Live: the asyncio loop still turns (a heartbeat task, no I/O), so a wedged
    loop restarts the pod while a database outage does not. Ready: the SMTP socket listens and the
    ingest database answers at the schema revision this code expects (checked in the HTTP thread)."""

    def __init__(self, database: Database, migrations_dir: Path | None = MIGRATIONS_DIR, live_max_lag: float = 10.0):
        self.database = database
        self.live_max_lag = live_max_lag
        self.last_beat = time.monotonic()
        self.listening = False
        self.expected = self.known = None
        if migrations_dir is not None and (migrations_dir / "env.py").exists():
            self.expected = migrations.expected_heads(migrations_dir)
            self.known = migrations.known_revisions(migrations_dir)

    async def beat_forever(self) -> None:
        while True:
            self.last_beat = time.monotonic()
            await asyncio.sleep(1.0)

    def live(self) -> tuple[int, dict]:
        lag = time.monotonic() - self.last_beat
        ok = lag < self.live_max_lag
        return (200 if ok else 503), {"service": "smtp", "status": "ok" if ok else "stalled",
                                      "loop_lag_seconds": round(lag, 3)}

    def ready(self) -> tuple[int, dict]:
        checks: dict[str, object] = {"listening": self.listening}
        ok = self.listening
        try:
            with self.database.engine.connect() as connection:
                current = migrations.current_revisions(connection)
            checks["database"] = "up"
            if self.expected is not None:
                checks["schema"] = migrations.schema_state(current, self.expected, self.known)
                ok = ok and checks["schema"] in ("current", "ahead")
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said in the answer
            checks["database"] = "down"
            checks["database_error"] = (str(exc) or type(exc).__name__).splitlines()[0][:200]
            ok = False
        return (200 if ok else 503), {"service": "smtp", "status": "ready" if ok else "not ready", **checks}


def health_and_metrics_app(health: ListenerHealth):
    """WSGI: /health/live and /health/ready as JSON, anything else prometheus_client's /metrics."""
    metrics = prometheus_client.make_wsgi_app()

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path not in ("/health/live", "/health/ready"):
            return metrics(environ, start_response)
        status, body = health.live() if path == "/health/live" else health.ready()
        payload = json.dumps(body).encode()
        start_response("200 OK" if status == 200 else "503 Service Unavailable",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature; probes every few seconds
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def serve_http(host: str, port: int, health: ListenerHealth) -> WSGIServer:
    """A thread of its own: probes and scrapes never touch the SMTP event loop."""
    server = make_server(host, port, health_and_metrics_app(health), server_class=_ThreadingWSGIServer,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="smtp-http", daemon=True).start()
    return server


async def serve(settings: Settings) -> None:
    tls = tls_context(settings)  # a missing or unreadable certificate stops the start, loudly
    database = Database(config.database_url(SERVICE_NAME))
    handler = IntakeHandler(database, open_blob_store(settings.blob_location), settings)
    loop = asyncio.get_running_loop()
    health = ListenerHealth(database)
    beat = asyncio.create_task(health.beat_forever())
    metrics_port = config.env_int(METRICS_PORT_ENV, 0, minimum=0)
    if metrics_port:
        serve_http(settings.smtp_host, metrics_port, health)
    host, port = settings.smtp_host, settings.smtp_port
    server = await loop.create_server(lambda: build_server(handler, tls), host, port)
    health.listening = True
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("SMTP listener on %s:%s (max %d bytes, STARTTLS %s)", host, port, settings.max_message_bytes,
             ("required" if settings.smtp_require_tls else "offered") if tls else "off")
    await stop.wait()
    # Graceful: stop accepting; sessions in DATA finish storing and get their answer, idle ones are
    # closed (Python 3.11's wait_closed() waits for no connection: asyncio.run would cancel them all)
    health.listening = False  # not ready while draining (the HTTP thread still answers)
    server.close()
    await handler.close_sessions()
    beat.cancel()
    # no http.shutdown(): it waits for the server's 0.5 s poll; its daemon thread ends with the process
    database.dispose()
    log.info("SMTP listener stopped")


def exit_process(code: int) -> None:
    """End the stopped listener now, as mailroom_shared.service_process does: what is left is the
    interpreter's teardown of its modules (0.5 s to over a second of CPU), which a dead process does
    not need. The atexit handlers (logging.shutdown) still run and the output is flushed."""
    try:
        atexit._run_exitfuncs()  # noqa: SLF001
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # closed, or a pipe whose reader is gone
                stream.flush()
        os._exit(code)


def main() -> None:
    observability.configure_logging(SERVICE_NAME)  # MAILROOM_LOG_FORMAT and redaction, as the services
    asyncio.run(serve(load_settings(mailboxes=False)))
    exit_process(0)  # only after a clean stop: an error still raises with its traceback


if __name__ == "__main__":
    main()
