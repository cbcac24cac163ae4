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
  answers 451 so the sending server retries (nothing is lost).
Parsing happens later in the ingest service, never inside the SMTP session.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import signal
import ssl
import time

from aiosmtpd.smtp import SMTP, Envelope, Session

from ingest import SERVICE_NAME, handlers, queries
from ingest.blobstore import BlobStore, open_blob_store
from ingest.domain.recipients import split_recipient
from ingest.settings import Settings
from ingest.settings import load as load_settings
from mailroom_shared import config, observability
from mailroom_shared.caching import Expiring
from mailroom_shared.db import Database
from mailroom_shared.events.tracing import derived_trace_id

log = logging.getLogger("ingest.smtp")

CHANNEL_CACHE_SECONDS = 2.0
RATE_WINDOW_SECONDS = 60.0


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


class IntakeHandler:
    def __init__(self, database: Database, blobs: BlobStore, settings: Settings):
        self.database = database
        self.blobs = blobs
        self.settings = settings
        self.channels = ChannelCache(database)
        self.limits = ClientLimits(settings.smtp_max_connections_per_ip, settings.smtp_max_messages_per_minute_per_ip,
                                   settings.smtp_limits_exempt)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options):
        if not self.limits.message(_client_ip(session.peer)):
            log.warning("%s: over %d messages a minute; refused", session.peer, self.limits.max_messages)
            return "421 4.7.0 Too many messages from your address, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options):
        if len(envelope.rcpt_tos) >= self.settings.smtp_max_recipients:
            return "452 4.5.3 Too many recipients"
        try:
            channels = await asyncio.get_running_loop().run_in_executor(None, self.channels.get)
        except Exception:
            log.exception("could not read inbox addresses")
            return "451 4.3.0 Temporary failure, please try again later"
        if not channels:
            # A fresh system that has not yet heard of any inbox: ask the sender to retry
            # rather than bounce mail that will be deliverable in a moment.
            return "450 4.3.2 Inboxes not configured yet, please try again later"
        if split_recipient(address, channels) is None:
            return f"550 5.1.1 <{address}>: no inbox here with that address (relaying denied)"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope):
        raw = envelope.original_content or b""
        if not raw.strip():
            return "554 5.6.0 Empty message"
        loop = asyncio.get_running_loop()
        try:
            # the addresses RCPT was checked against (cached): no extra transaction per message
            result = await loop.run_in_executor(None, lambda: handlers.accept(
                self.database, self.blobs, raw, list(envelope.rcpt_tos), "smtp", self.settings,
                envelope_from=envelope.mail_from, channels=self.channels.get()))
        except handlers.MessageTooLarge as exc:
            return f"552 5.3.4 {exc}"
        except Exception:
            log.exception("could not store a message from %s", envelope.mail_from)
            return "451 4.3.0 Temporary failure storing the message, please try again later"
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
        self._counted: str | None = None
        self._refused = False

    def connection_made(self, transport) -> None:
        first = self.transport is None and self._original_transport is None and not self._counted
        if first:  # not the same connection again after STARTTLS
            ip = _client_ip(transport.get_extra_info("peername"))
            if not self.limits.connect(ip):
                log.warning("%s: over %d connections; refused", ip, self.limits.max_connections)
                self._refused = True
                transport.write(f"421 4.7.0 {self.hostname} Too many connections from your address, "
                                "try again later\r\n".encode())
                transport.close()
                return
            self._counted = ip
        super().connection_made(transport)

    def connection_lost(self, error) -> None:
        if self._refused:
            return
        if self._counted is not None:
            self.limits.disconnect(self._counted)
            self._counted = None
        super().connection_lost(error)

    def eof_received(self):
        if self._refused:
            return False
        return super().eof_received()

    async def push(self, status) -> None:
        await super().push(status)
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else status
        if text.startswith("421") and self.transport is not None:
            self.transport.close()


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


async def serve(settings: Settings) -> None:
    tls = tls_context(settings)  # a missing or unreadable certificate stops the start, loudly
    database = Database(config.database_url(SERVICE_NAME))
    handler = IntakeHandler(database, open_blob_store(settings.blob_location), settings)
    loop = asyncio.get_running_loop()
    host, port = settings.smtp_host, settings.smtp_port
    server = await loop.create_server(lambda: build_server(handler, tls), host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("SMTP listener on %s:%s (max %d bytes, STARTTLS %s)", host, port, settings.max_message_bytes,
             ("required" if settings.smtp_require_tls else "offered") if tls else "off")
    await stop.wait()
    # Graceful: stop accepting; sessions in DATA finish storing (their executor jobs complete).
    server.close()
    await asyncio.wait_for(server.wait_closed(), timeout=30)
    database.dispose()


def main() -> None:
    observability.configure_logging(SERVICE_NAME)  # MAILROOM_LOG_FORMAT and redaction, as the services
    asyncio.run(serve(load_settings(mailboxes=False)))


if __name__ == "__main__":
    main()
