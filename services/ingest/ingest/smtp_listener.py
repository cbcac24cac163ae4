"""The SMTP listener (aiosmtpd), a process of its own: `mailroom-smtp` / `python -m ingest.smtp_listener`.

It is the public face of ingest, so it refuses early and clearly:
- RCPT only for configured inbox channel addresses (550 otherwise: never an open relay);
- a size limit advertised with SIZE and enforced (552);
- `250` only after the raw bytes are fsynced and the intake row committed; any storage failure
  answers 451 so the sending server retries (nothing is lost).
Parsing happens later in the ingest service, never inside the SMTP session.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiosmtpd.smtp import SMTP, Envelope, Session

from ingest import SERVICE_NAME, handlers, queries
from ingest.blobstore import DirectoryBlobStore
from ingest.domain.recipients import split_recipient
from ingest.settings import Settings
from ingest.settings import load as load_settings
from mailroom_shared import config
from mailroom_shared.caching import Expiring
from mailroom_shared.db import Database

log = logging.getLogger("ingest.smtp")

MAX_RECIPIENTS = 100
CHANNEL_CACHE_SECONDS = 2.0


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


class IntakeHandler:
    def __init__(self, database: Database, blobs: DirectoryBlobStore, settings: Settings):
        self.database = database
        self.blobs = blobs
        self.settings = settings
        self.channels = ChannelCache(database)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options):
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
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
        log.info("accepted %d bytes from %s for %s as %s", len(raw), envelope.mail_from, envelope.rcpt_tos, ids)
        return f"250 2.0.0 OK queued as {ids}"


def build_server(handler: IntakeHandler) -> SMTP:
    return SMTP(handler, data_size_limit=handler.settings.max_message_bytes, enable_SMTPUTF8=True,
                decode_data=False, hostname=handler.settings.smtp_hostname, ident="mailroom ingest")


async def serve(settings: Settings) -> None:
    database = Database(config.database_url(SERVICE_NAME))
    handler = IntakeHandler(database, DirectoryBlobStore(settings.blob_dir), settings)
    loop = asyncio.get_running_loop()
    host, port = settings.smtp_host, settings.smtp_port
    server = await loop.create_server(lambda: build_server(handler), host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("SMTP listener on %s:%s (max %d bytes)", host, port, settings.max_message_bytes)
    await stop.wait()
    # Graceful: stop accepting; sessions in DATA finish storing (their executor jobs complete).
    server.close()
    await asyncio.wait_for(server.wait_closed(), timeout=30)
    database.dispose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(serve(load_settings(mailboxes=False)))


if __name__ == "__main__":
    main()
