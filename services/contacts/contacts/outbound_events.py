"""What contacts does for outbound (issue #4), kept in one mixin of ContactsService: every email we
sent (`outbound.email_sent`) is logged, with its attachments, on the timeline of every recipient
(To, CC and BCC), creating contacts as needed. Our own inbox addresses (a forward to another
team's inbox) never become contacts."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from contacts import domain
from contacts.handlers import resolve_or_create
from contacts.models import MessageConversation, OwnAddress, TimelineEntry, outbox, processed_events
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.db import parse_time
from mailroom_shared.events.envelope import parse_envelope
from mailroom_shared.messaging.idempotency import ProcessedEvents
from mailroom_shared.messaging.nameko_adapters import reliable_event_handler
from mailroom_shared.messaging.outbox import Outbox

OUTBOX = Outbox(outbox)
PROCESSED = ProcessedEvents(processed_events)


def outbound_link_id(email_id: str) -> str:
    """The timeline's link to the conversation (message_conversations) for an email we sent."""
    return f"outbound:{email_id}"



def record_outbound_email(session: Session, outbox: Outbox, data: dict, event_id: str) -> list[TimelineEntry]:
    own = set(session.execute(select(OwnAddress.email)).scalars())
    link = outbound_link_id(data["email_id"])
    if session.get(MessageConversation, link) is None:
        session.add(MessageConversation(intake_id=link, conversation_id=data["conversation_id"]))
    sender = try_normalise_email((data.get("from_") or {}).get("email"))
    entries, seen = [], set()
    for recipient in [*(data.get("to") or []), *(data.get("cc") or []), *(data.get("bcc") or [])]:
        email = try_normalise_email(recipient.get("email"))
        if email is None or email in own or email in seen or email == sender:
            continue
        seen.add(email)
        contact, _ = resolve_or_create(session, outbox, email, (recipient.get("name") or "").strip() or None,
                                       created_from=event_id)
        existing = session.execute(select(TimelineEntry).where(
            TimelineEntry.contact_id == contact.id, TimelineEntry.direction == "out",
            TimelineEntry.rfc_message_id == data["rfc_message_id"])).scalar_one_or_none()
        if existing is not None:
            continue
        entry = TimelineEntry(
            id=str(uuid.uuid4()), contact_id=contact.id, direction="out", rfc_message_id=data["rfc_message_id"],
            intake_id=link, channel_address=sender, subject=data.get("subject") or "",
            snippet=domain.snippet(data.get("text"), data.get("html")),
            attachments=[{k: a.get(k) for k in ("filename", "content_type", "size", "sha256", "url")}
                         for a in data.get("attachments") or []],
            forwarded_by=None, occurred_at=parse_time(data.get("sent_at")))
        session.add(entry)
        session.flush()
        outbox.record(session, "timeline_entry_added", contact.id, {
            "entry_id": entry.id, "contact_id": contact.id, "direction": "out",
            "message_id": data["rfc_message_id"], "subject": entry.subject,
            "conversation_id": data["conversation_id"]})
        entries.append(entry)
    return entries


class OutboundEvents:
    """Mixed into ContactsService (uses its `db` and `relay`)."""

    @reliable_event_handler("outbound", "email_sent")
    def handle_email_sent(self, envelope):
        data = parse_envelope(envelope, "email_sent")
        PROCESSED.run_once(self.db, envelope, "handle_email_sent",
                           lambda session: record_outbound_email(session, OUTBOX, data, envelope["id"]))
        self.relay.wake()
