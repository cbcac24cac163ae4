"""The SMTP client: one delivery with smtplib through a relay, and its Outcome
(domain/delivery.py says what an outcome means for the email).

accepted (250 to DATA, with the server's queue id) → sent; a 4xx anywhere or a connection
problem → temporary (retried); a 5xx → permanent. If some recipients are refused while others
are accepted, the message is sent to those accepted (a resend would double it for them) and the
refused ones are reported.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl as ssl_lib

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


def deliver(relay: SmtpRelay, mail_from: str, recipients: list[str], raw: bytes,
            local_hostname: str | None = None) -> Outcome:
    """Send `raw` to `recipients` through `relay`; never raises for SMTP or network trouble."""
    client: smtplib.SMTP | None = None
    try:
        if relay.ssl:
            client = smtplib.SMTP_SSL(relay.host, relay.port, local_hostname=local_hostname,
                                      timeout=relay.timeout, context=ssl_lib.create_default_context())
        else:
            client = smtplib.SMTP(relay.host, relay.port, local_hostname=local_hostname, timeout=relay.timeout)
        client.ehlo_or_helo_if_needed()
        if relay.starttls:
            client.starttls(context=ssl_lib.create_default_context())
            client.ehlo()
        if relay.username:
            client.login(relay.username, relay.password or "")
        code, response = client.mail(_envelope_address(mail_from))
        if code != 250:
            client.rset()
            return refusal(code, f"MAIL FROM: {code} {_text(response)}")
        refused: dict[str, tuple[int, str]] = {}
        for recipient in recipients:
            code, response = client.rcpt(_envelope_address(recipient))
            if code not in (250, 251):
                refused[recipient] = (code, _text(response))
        if len(refused) == len(recipients):
            client.rset()
            codes = [c for c, _ in refused.values()]
            detail = "; ".join(f"{r}: {c} {t}" for r, (c, t) in refused.items())
            # any temporary refusal: retry (the permanent ones will be refused again and reported)
            worst = min(codes) if any(400 <= c < 500 for c in codes) else max(codes)
            return refusal(worst, f"RCPT TO refused: {detail}")
        code, response = client.data(raw)
        text = _text(response)
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
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
