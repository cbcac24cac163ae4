"""The SMTP client: one delivery with smtplib through a relay, and its Outcome
(domain/delivery.py says what an outcome means for the email).

accepted (250 to DATA, with the server's queue id) → sent; a 4xx anywhere or a connection
problem → temporary (retried); a 5xx → permanent. If some recipients are refused while others
are accepted, the message is sent to those accepted (a resend would double it for them) and the
refused ones are reported.

Connections are reused (`ConnectionPool`): the next email to the same relay starts with MAIL FROM on
the session the previous one ended, instead of a new TCP (and TLS) connection, EHLO and AUTH: the
most expensive part of a short message's delivery, for us and the relay. A kept session the relay
has meanwhile closed (or answers 421 to MAIL FROM) is replaced by a new one for the same email:
nothing was accepted on it, so that is never a second copy. Anything going wrong after MAIL FROM
closes the session (its state is unknown) and the outcome is as without the pool.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl as ssl_lib
import time
from collections import deque
from dataclasses import dataclass

from outbound.domain.delivery import Outcome, refusal
from outbound.settings import SmtpRelay

_QUEUE_ID = re.compile(r"(?:queued as|id=|queue id)\s*<?([A-Za-z0-9._\-@]+)>?", re.IGNORECASE)


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value or "")


def queue_id_from(response: str) -> str | None:
    match = _QUEUE_ID.search(response)
    return match.group(1) if match else None


def _envelope_address(email: str) -> str:
    local, _, domain = email.rpartition("@")
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}"


def _open(relay: SmtpRelay, local_hostname: str | None) -> smtplib.SMTP:
    """A new session, greeted, secured and authenticated as the relay asks."""
    if relay.ssl:
        client = smtplib.SMTP_SSL(relay.host, relay.port, local_hostname=local_hostname,
                                  timeout=relay.timeout, context=ssl_lib.create_default_context())
    else:
        client = smtplib.SMTP(relay.host, relay.port, local_hostname=local_hostname, timeout=relay.timeout)
    try:
        client.ehlo_or_helo_if_needed()
        if relay.starttls:
            client.starttls(context=ssl_lib.create_default_context())
            client.ehlo()
        if relay.username:
            client.login(relay.username, relay.password or "")
    except BaseException:
        client.close()
        raise
    return client


def _close(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


@dataclass
class _Kept:
    client: smtplib.SMTP
    idle_since: float
    messages: int  # sent on this session so far


class ConnectionPool:
    """Idle SMTP sessions per (relay, EHLO name), at most `max_idle_per_relay` of each kept (the
    others are closed when their email is done), none older than `max_idle_seconds` idle (relays
    drop idle clients: Postfix after 300 s) nor used for more than `max_messages` emails (some
    relays cap a session). Green-thread safe: taking and giving back never yield in between.
    Each sender holds at most one session, so open sessions ≤ senders + the idle cap."""

    def __init__(self, max_idle_per_relay: int = 4, max_idle_seconds: float = 30.0, max_messages: int = 100,
                 clock=time.monotonic):
        self.max_idle_per_relay = max_idle_per_relay
        self.max_idle_seconds = max_idle_seconds
        self.max_messages = max_messages
        self._clock = clock
        self._idle: dict[tuple, deque[_Kept]] = {}
        self.opened = 0  # sessions opened, for tests and metrics
        self.reused = 0  # emails sent on a kept session
        self.reopened = 0  # kept sessions found closed by the relay and replaced

    def take(self, key: tuple) -> _Kept | None:
        idle = self._idle.get(key)
        now = self._clock()
        while idle:
            kept = idle.pop()  # the most recently used: the least likely to have been dropped
            if now - kept.idle_since <= self.max_idle_seconds:
                return kept
            _close(kept.client)
        return None

    def give_back(self, key: tuple, kept: _Kept) -> None:
        idle = self._idle.setdefault(key, deque())
        if len(idle) >= self.max_idle_per_relay or kept.messages >= self.max_messages:
            _close(kept.client)
            return
        kept.idle_since = self._clock()
        idle.append(kept)

    def close(self) -> None:
        idle, self._idle = self._idle, {}
        for sessions in idle.values():
            for kept in sessions:
                _close(kept.client)


def deliver(relay: SmtpRelay, mail_from: str, recipients: list[str], raw: bytes,
            local_hostname: str | None = None, pool: ConnectionPool | None = None) -> Outcome:
    """Send `raw` to `recipients` through `relay`; never raises for SMTP or network trouble.
    With `pool`, on a kept session when there is one, and the session is kept after."""
    key = (relay, local_hostname)
    kept = pool.take(key) if pool is not None else None
    client: smtplib.SMTP | None = kept.client if kept else None
    reusable = False
    try:
        code, response = None, b""
        if client is not None:
            try:
                code, response = client.mail(_envelope_address(mail_from))
            except (smtplib.SMTPServerDisconnected, OSError):
                code = None  # dropped while idle: nothing was said on it, open a new one
            if code is None or code == 421:
                _close(client)
                client, kept = None, None
                pool.reopened += 1
            else:
                pool.reused += 1
        if client is None:
            client = _open(relay, local_hostname)
            if pool is not None:
                pool.opened += 1
            code, response = client.mail(_envelope_address(mail_from))
        if code != 250:
            client.rset()
            reusable = code != 421
            return refusal(code, f"MAIL FROM: {code} {_text(response)}")
        refused: dict[str, tuple[int, str]] = {}
        for recipient in recipients:
            code, response = client.rcpt(_envelope_address(recipient))
            if code not in (250, 251):
                refused[recipient] = (code, _text(response))
        if len(refused) == len(recipients):
            client.rset()
            reusable = all(c != 421 for c, _ in refused.values())
            codes = [c for c, _ in refused.values()]
            detail = "; ".join(f"{r}: {c} {t}" for r, (c, t) in refused.items())
            # any temporary refusal: retry (the permanent ones will be refused again and reported)
            worst = min(codes) if any(400 <= c < 500 for c in codes) else max(codes)
            return refusal(worst, f"RCPT TO refused: {detail}")
        code, response = client.data(raw)
        text = _text(response)
        reusable = code != 421  # a transaction ended by the relay's answer leaves the session ready
        if code != 250:
            return refusal(code, f"DATA: {code} {text}")
        return Outcome("sent", code, text, queue_id_from(text) or text[:200],
                       refused=[f"{r}: {c} {t}" for r, (c, t) in refused.items()])
    except smtplib.SMTPAuthenticationError as exc:
        return refusal(exc.smtp_code, f"authentication failed: {exc.smtp_code} {_text(exc.smtp_error)}")
    except smtplib.SMTPResponseException as exc:
        return refusal(exc.smtp_code, f"{exc.smtp_code} {_text(exc.smtp_error)}")
    except (TimeoutError, smtplib.SMTPException, OSError, ssl_lib.SSLError) as exc:
        return Outcome("temporary", None, f"{type(exc).__name__}: {exc}")
    finally:
        if client is not None:
            if pool is not None and reusable:
                pool.give_back(key, _Kept(client, 0.0, (kept.messages if kept else 0) + 1))
            else:
                _close(client)
