"""What every service needs to act on contacts' `contact_erased` (GDPR art. 17, issue #17): the
person's keys as every service compares them, a JSON-column match on them, and dropping the
events about the person that a service's transactional outbox has not relayed yet.

The keys are the erased contact's addresses (normalised as mailroom_shared.addresses does,
lower-cased), its chat identities' values (E.164 phone numbers, PSIDs, handles) and its id. A
JSON column (or an envelope's text) "mentions" a key when it holds it as a whole JSON string,
whatever case the header had: `"ada@example.com"` matches, `"x-ada@example.com"` does not, and a
LIKE wildcard in a hostile address is matched literally (autoescape)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table, Text, cast, delete, false, func, or_, select
from sqlalchemy.orm import Session

from mailroom_shared.addresses import try_normalise_email

# the erasure's own events: they carry the keys on purpose and must go out
ERASURE_EVENTS = frozenset({"contact_erased", "contact_messages_erased", "contact_mail_erased",
                            "contact_sent_mail_erased", "contact_notifications_erased"})
MAX_KEYS = 500  # an erasure names a handful of addresses; more is a hostile or broken event


@dataclass(frozen=True)
class ErasureKeys:
    contact_id: str
    emails: tuple[str, ...]  # normalised (the local part keeps its case, as stored everywhere), sorted
    handles: tuple[str, ...]  # chat identity values, sorted

    @property
    def all(self) -> list[str]:
        """Every key a stored event or row may name the person by (the id too)."""
        return [*self.emails, *self.handles, *([self.contact_id] if self.contact_id else [])]

    @property
    def addresses_and_handles(self) -> list[str]:
        return [*self.emails, *self.handles]

    @property
    def lower_emails(self) -> list[str]:
        """For columns compared with func.lower() (an envelope sender, a suppression)."""
        return sorted({e.lower() for e in self.emails})


def erasure_keys(data: dict) -> ErasureKeys:
    """The keys of a `contact_erased` event's data (tolerant: a missing or malformed part is none)."""
    emails = data.get("emails") if isinstance(data.get("emails"), list) else []
    identities = data.get("identities") if isinstance(data.get("identities"), list) else []
    normalised = {e for e in (try_normalise_email(x) for x in emails[:MAX_KEYS] if isinstance(x, str)) if e}
    handles = {str(i.get("value")) for i in identities[:MAX_KEYS] if isinstance(i, dict) and i.get("value")}
    return ErasureKeys(str(data.get("contact_id") or ""), tuple(sorted(normalised)), tuple(sorted(handles)))


def mentions(column, values: list[str] | tuple[str, ...]):
    """The JSON (or JSON text) column names one of `values` as a whole string, any case."""
    values = [v for v in values if v]
    if not values:
        return false()
    text = func.lower(cast(column, Text))
    return or_(*(text.contains(f'"{v.lower()}"', autoescape=True) for v in values))


def drop_pending_events(session: Session, outbox: Table, keys: ErasureKeys,
                        keep: frozenset[str] = frozenset()) -> int:
    """Deletes the outbox rows not relayed yet that name the person (an address, a chat handle or
    the contact id): they would carry the person's data to other services and subscribers after
    the erasure. The erasure's own events stay, and the event types in `keep`. A row the relay is
    publishing at this moment is locked by it: the DELETE waits, then finds it published and
    leaves it (it went out before). Returns how many were dropped."""
    if not keys.all:
        return 0
    pending = select(outbox.c.id).where(
        outbox.c.published_at.is_(None), outbox.c.event_type.notin_(ERASURE_EVENTS | keep),
        mentions(outbox.c.envelope, keys.all))
    return session.execute(delete(outbox).where(outbox.c.id.in_(pending),
                                                outbox.c.published_at.is_(None))).rowcount or 0
