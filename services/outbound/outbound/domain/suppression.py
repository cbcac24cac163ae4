"""Which recipients hard-bounced, in plain Python: from a relay's answers to RCPT TO (a 5xx for one
recipient) and from a DSN's per-recipient fields (action `failed`, status 5.x.x); how an address
is compared (normalised).

Scope: per inbox. The suppression is kept for the inbox whose email bounced (each inbox may send
through its own relay and From domain, and only its members may lift it)."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

MAX_ADDRESS_CHARS = 320
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


class InvalidAddress(ValueError):
    pass


def normalised(address: str) -> str:
    """The form a suppression is kept and compared in: trimmed, lower-case, the domain in IDNA
    ASCII (a DSN may name `bücher.example` as `xn--bcher-kva.example`)."""
    if not isinstance(address, str):
        raise InvalidAddress("an address must be a string")
    value = address.strip().strip("<>").strip()
    if not value or len(value) > MAX_ADDRESS_CHARS or any(ch.isspace() or ch in "\x00,;<>\"" for ch in value):
        raise InvalidAddress(f"not an email address: {address[:100]!r}")
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or "@" in local:
        raise InvalidAddress(f"not an email address: {address[:100]!r}")
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}".lower()


def normalised_or_none(address) -> str | None:
    try:
        return normalised(address)
    except InvalidAddress:
        return None


@dataclass(frozen=True)
class HardBounce:
    email: str  # as the email named it
    status: str  # 550 (SMTP) or 5.1.1 (DSN)
    reason: str


def smtp_refusals(recipients: list[str], texts: list[str]) -> list[HardBounce]:
    """The recipients a relay refused with a 5xx at RCPT TO, read from the delivery's report
    (`<address>: <code> <text>`, in the refused list of a sent email or the response of a failed
    one). A 5xx to DATA or MAIL FROM names no recipient and suppresses nobody."""
    found = []
    for recipient in recipients:
        pattern = re.compile(re.escape(recipient) + r": ([245]\d\d)\b ?([^;]*)")
        for text in texts:
            match = pattern.search(text or "")
            if match and match.group(1).startswith("5"):
                found.append(HardBounce(recipient, match.group(1), f"{match.group(1)} {match.group(2)}".strip()[:500]))
                break
    return found


def dsn_status(value: str | None) -> str | None:
    match = _STATUS.search(value or "")
    return match.group(0) if match else None


@dataclass(frozen=True)
class DsnVerdict:
    """What a DSN says about one sent email: the recipients it returned it for (`bounced`: each
    with whether it is hard), or `unknown` (the DSN named none of the email's recipients, or an
    older event without per-recipient fields): then the whole email is taken as bounced, as before."""

    bounced: list[HardBounce]
    hard: set[str]  # normalised addresses that hard-bounced
    unknown: bool


def dsn_verdict(email_recipients: list[str], reported: list[dict] | None, reason: str) -> DsnVerdict | None:
    """None: the DSN reports no failure for this email (only `delayed`, `delivered`, `relayed` …)."""
    ours = {normalised_or_none(r): r for r in email_recipients}
    ours.pop(None, None)
    if not reported:
        status = dsn_status(reason)
        if len(ours) == 1 and status and status.startswith("5"):  # one recipient: it is the one
            [(key, email)] = ours.items()
            return DsnVerdict([HardBounce(email, status, reason)], {key}, False)
        return DsnVerdict([], set(), True)
    failed = [r for r in reported if isinstance(r, dict) and str(r.get("action") or "").lower() == "failed"]
    if not failed:
        return None
    bounced, hard = [], set()
    for report in failed:
        key = normalised_or_none(report.get("email"))
        if key is None or key not in ours or any(normalised_or_none(b.email) == key for b in bounced):
            continue
        status = dsn_status(report.get("status")) or str(report.get("status") or "")[:40]
        bounced.append(HardBounce(ours[key], status, str(report.get("diagnostic") or reason)[:500]))
        if status.startswith("5"):
            hard.add(key)
    if bounced:
        return DsnVerdict(bounced, hard, False)
    # a failure for an address we did not send to (an alias expanded further on): with one
    # recipient it can only be that one; otherwise who bounced is unknown
    statuses = [dsn_status(r.get("status")) for r in failed]
    if len(ours) == 1 and any(s and s.startswith("5") for s in statuses):
        [(key, email)] = ours.items()
        return DsnVerdict([HardBounce(email, next(s for s in statuses if s and s.startswith("5")), reason)],
                          {key}, False)
    return DsnVerdict([], set(), True)
