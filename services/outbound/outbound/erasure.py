"""contacts' `contact_erased` (GDPR art. 17) as outbound applies it: the content of every email
sent to that person (To, Cc or Bcc) is erased — subject, bodies, recipients, the built MIME bytes,
attachments — and the rows stay as a record that an email went out (ids, state, times). An email
still waiting to go is not sent any more (failed, "erased"). Chat replies to their chat
identities lose their text and body alike; their suppression and auto-acknowledgement rows go.
Events about the person that the outbox has not relayed yet (an email_sent to them, say) are
dropped: they would put the person back on a timeline. Confirmed with `contact_sent_mail_erased`
(counts only)."""

from __future__ import annotations

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from mailroom_shared.db import utcnow
from mailroom_shared.erasure import drop_pending_events, erasure_keys, mentions
from mailroom_shared.messaging.outbox import Outbox
from outbound.models import Attachment, AutoAcknowledged, ChatMessage, Email, Suppression

ERASED = "[erased]"
WAITING = ("queued", "deferred")


def erase_contact(session: Session, outbox: Outbox, data: dict) -> dict:
    keys = erasure_keys(data)
    emails, handles = list(keys.emails), list(keys.handles)
    sent = session.execute(select(Email).where(or_(
        mentions(Email.to, emails), mentions(Email.cc, emails), mentions(Email.bcc, emails)))
    ).scalars().all()
    ids = [e.id for e in sent]
    attachments = session.execute(delete(Attachment).where(Attachment.email_id.in_(ids or [""]))).rowcount
    session.expire_all()  # the emails' attachment lists as they are now
    for email in session.execute(select(Email).where(Email.id.in_(ids or [""]))).scalars():
        email.subject, email.text, email.html, email.raw = ERASED, None, None, b""
        email.to, email.cc, email.bcc, email.reply_to = [], [], [], []
        if email.state in WAITING:  # never send what was erased
            email.state, email.last_error, email.failed_at, email.claimed_until = "failed", "erased", utcnow(), None
    chats = session.execute(select(ChatMessage).where(mentions(ChatMessage.identity, handles))).scalars().all()
    for chat in chats:
        chat.text, chat.body, chat.identity, chat.thread_id = ERASED, "", {}, ERASED
        if chat.state in WAITING:
            chat.state, chat.claimed_until = "failed", None
    suppressions = session.execute(delete(Suppression).where(
        func.lower(Suppression.address).in_(keys.lower_emails or [""]))).rowcount
    acknowledged = session.execute(delete(AutoAcknowledged).where(
        func.lower(AutoAcknowledged.address).in_(keys.lower_emails or [""]))).rowcount
    events = drop_pending_events(session, outbox.table, keys)
    erased = {"emails": len(ids), "attachments": attachments, "chat_messages": len(chats),
              "suppressions": suppressions, "auto_acknowledgements": acknowledged, "pending_events": events}
    outbox.record(session, "contact_sent_mail_erased", data["contact_id"], {
        "erasure_id": data["erasure_id"], "contact_id": data["contact_id"], "erased": erased})
    return erased
