"""The suppression list's use cases (the rules are in domain/suppression.py): a recipient that
hard-bounced is suppressed for the inbox that sent to it, a send naming a suppressed address is
refused (422, naming it), the delivery worker leaves suppressed recipients out of an email queued
before the bounce, and a member of the inbox lifts a suppression. Also the bounce use case: a DSN
returns an email for the recipients it names, not for every recipient."""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from mailroom_shared import observability
from mailroom_shared.auth import Principal
from mailroom_shared.db import aware, utcnow
from mailroom_shared.http import HttpError, NotFound
from mailroom_shared.messaging.outbox import Outbox
from mailroom_shared.pagination import newest_first, next_cursor
from outbound.domain import recipients as domain_recipients
from outbound.domain import suppression
from outbound.domain.delivery import Outcome
from outbound.domain.prepared import Prepared
from outbound.models import Email, Suppression


class RecipientSuppressed(HttpError):
    """A send naming a suppressed address: nothing is queued."""

    status = 422
    code = "recipient_suppressed"


def refusal(inbox_id: str, suppressed: list[dict]) -> RecipientSuppressed:
    names = ", ".join(s["address"] for s in suppressed)
    first = suppressed[0]
    return RecipientSuppressed(
        f"not sent: {names} {'is' if len(suppressed) == 1 else 'are'} on this inbox's suppression list after a "
        f"hard bounce ({first['reason']}); remove {'it' if len(suppressed) == 1 else 'them'} from the recipients, "
        f"or a member of the inbox lifts the suppression (DELETE /api/outbound/inboxes/{inbox_id}/suppressions/"
        f"<address>)", {"field": "to", "suppressed": suppressed})


def view(row: Suppression) -> dict:
    return {"address": row.address, "inbox_id": row.inbox_id, "source": row.source, "status": row.status,
            "reason": row.reason, "email_id": row.email_id, "bounce_intake_id": row.bounce_intake_id,
            "bounces": row.bounces, "created_at": _iso(row.created_at), "last_bounced_at": _iso(row.last_bounced_at),
            "lifted_at": _iso(row.lifted_at), "lifted_by": row.lifted_by}


def _iso(value) -> str | None:
    return aware(value).isoformat() if value is not None else None


# asked twice per email (when it is queued and when it is claimed), so built once (issue #16)
_ACTIVE = (select(Suppression).where(Suppression.inbox_id == bindparam("inbox_id"),
                                     Suppression.address.in_(bindparam("addresses", expanding=True)),
                                     Suppression.lifted_at.is_(None))
           .order_by(Suppression.address))


def active(session: Session, inbox_id: str, addresses) -> list[Suppression]:
    keys = sorted({k for k in (suppression.normalised_or_none(a) for a in addresses) if k})
    if not keys:
        return []
    return list(session.execute(_ACTIVE, {"inbox_id": inbox_id, "addresses": keys}).scalars())


def refuse_suppressed(session: Session, prepared: Prepared) -> None:
    """A send naming a suppressed To/CC/BCC address queues nothing and says which (422)."""
    found = active(session, prepared.inbox_id, [m.email for m in (*prepared.to, *prepared.cc, *prepared.bcc)])
    if found:
        raise refusal(prepared.inbox_id, [
            {"address": s.address, "reason": s.reason, "since": _iso(s.last_bounced_at)} for s in found])


def deliverable(session: Session, inbox_id: str, addresses: list[str]) -> list[str]:
    """`addresses` without the suppressed ones (an email queued before one of them bounced)."""
    suppressed = {s.address for s in active(session, inbox_id, addresses)}
    return [a for a in addresses if suppression.normalised_or_none(a) not in suppressed]


def suppress(session: Session, inbox_id: str, bounce: suppression.HardBounce, source: str,
             email_id: str | None, intake_id: str | None = None) -> Suppression | None:
    """Suppress (again, if lifted) the address that hard-bounced; a repeat bounce is counted."""
    key = suppression.normalised_or_none(bounce.email)
    if key is None:
        return None
    now = utcnow()
    row = session.execute(select(Suppression).where(Suppression.inbox_id == inbox_id, Suppression.address == key)
                          .with_for_update()).scalar_one_or_none()
    if row is None:
        row = Suppression(id=str(uuid.uuid4()), inbox_id=inbox_id, address=key, bounces=0, created_at=now)
        session.add(row)
    elif row.lifted_at is not None:  # bounced again after a member lifted it
        row.lifted_at = row.lifted_by = None
        row.created_at = now
    row.source, row.status, row.reason = source, bounce.status[:40], bounce.reason[:2000] or bounce.status
    row.email_id, row.bounce_intake_id, row.last_bounced_at = email_id, intake_id, now
    row.bounces = (row.bounces or 0) + 1
    session.flush()
    return row


def record_smtp_refusals(session: Session, email: Email, recipients: list[str], outcome: Outcome) -> None:
    """A relay's 5xx at RCPT TO for a recipient suppresses it, whatever became of the email (sent
    to the others; failed; or retried for a recipient with a 4xx, then without this one)."""
    for bounce in suppression.smtp_refusals(recipients, [str(r) for r in outcome.refused] + [outcome.response]):
        suppress(session, email.inbox_id, bounce, "smtp", email.id)


def _recipients_of(email: Email) -> list[str]:
    return [a["email"] for a in [*email.to, *email.cc, *email.bcc]]


def record_bounce(session: Session, outbox: Outbox, data: dict) -> list[Email]:
    """A DSN arrived through ingest (`delivery_report_received`'s data). Each sent email it
    returns gets `email_bounced` naming the recipients it bounced for; the email is `bounced` only
    when none of its recipients got it (the others delivered: it stays `sent`, `partial`). Hard
    bounces are suppressed for the inbox. A DSN reporting only delays is not a bounce; the same
    DSN again changes nothing (so one that also arrived some other way is recorded once)."""
    ids = [domain_recipients.clean_id(i) for i in data.get("bounced_message_ids") or []]
    if not ids:
        return []
    reason = data.get("reason") or "delivery status notification"
    bounced = []
    for email in session.execute(select(Email).where(Email.rfc_message_id.in_(ids)).with_for_update()).scalars():
        if email.state in ("bounced", "failed"):
            continue
        verdict = suppression.dsn_verdict(_recipients_of(email), data.get("bounced_recipients"), reason)
        if verdict is None:
            continue
        before = list(email.bounced_recipients or [])
        known = {suppression.normalised_or_none(b.get("email")) for b in before}
        new = [b for b in verdict.bounced if suppression.normalised_or_none(b.email) not in known]
        if not verdict.unknown and not new:
            continue  # these recipients' bounce is recorded already
        entries = [{"email": b.email, "status": b.status, "reason": b.reason,
                    "suppressed": suppression.normalised_or_none(b.email) in verdict.hard} for b in new]
        email.bounced_recipients = before + entries
        gone = known | {suppression.normalised_or_none(b.email) for b in new} | _refused_at_smtp(email)
        everyone = verdict.unknown or all(suppression.normalised_or_none(r) in gone for r in _recipients_of(email))
        email.bounce_reason = (new[0].reason if new else reason)[:2000]
        email.bounce_intake_id = data.get("intake_id")
        if everyone:
            email.state, email.bounced_at = "bounced", utcnow()
            email.claimed_until = None
            observability.DELIVERIES.labels("email", "bounced").inc()
        for bounce in new:
            if suppression.normalised_or_none(bounce.email) in verdict.hard:
                suppress(session, email.inbox_id, bounce, "dsn", email.id, data.get("intake_id"))
        outbox.record(session, "email_bounced", email.id, {
            "email_id": email.id, "inbox_id": email.inbox_id, "conversation_id": email.conversation_id,
            "rfc_message_id": email.rfc_message_id, "bounce_intake_id": data.get("intake_id") or "",
            "reason": email.bounce_reason, "bounce_raw_url": data.get("raw_url"), "recipients": entries,
            "partial": not everyone})
        bounced.append(email)
    return bounced


def _refused_at_smtp(email: Email) -> set[str]:
    refused = [str(r) for r in email.refused_recipients or []]
    return {suppression.normalised_or_none(r) for r in _recipients_of(email)
            if any(text.startswith(f"{r}:") for text in refused)}


# --- the list, for the inbox's people --------------------------------------------------------------

def list_page(session: Session, inbox_id: str, include_lifted: bool, cursor: dict | None, limit: int) -> dict:
    query = select(Suppression).where(Suppression.inbox_id == inbox_id)
    if not include_lifted:
        query = query.where(Suppression.lifted_at.is_(None))
    rows = session.execute(newest_first(query, Suppression.created_at, Suppression.id, cursor, limit)).scalars().all()
    return {"items": [view(r) for r in rows[:limit]], "next_cursor": next_cursor(rows, limit, lambda r: r.created_at)}


def get_active(session: Session, inbox_id: str, address: str) -> Suppression:
    try:
        key = suppression.normalised(address)
    except suppression.InvalidAddress as exc:
        raise HttpError(str(exc), {"field": "address"}) from exc
    row = session.execute(select(Suppression).where(Suppression.inbox_id == inbox_id, Suppression.address == key)
                          .with_for_update()).scalar_one_or_none()
    if row is None or row.lifted_at is not None:
        raise NotFound(f"{key} is not suppressed in this inbox")
    return row


def lift(session: Session, inbox_id: str, address: str, principal: Principal) -> dict:
    """A member lifts a suppression: the address may be sent to again (until it bounces again)."""
    row = get_active(session, inbox_id, address)
    row.lifted_at, row.lifted_by = utcnow(), principal.user_id
    return view(row)
