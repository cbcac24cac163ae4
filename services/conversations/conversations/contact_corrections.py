"""contacts' corrections (issue #17) as conversations applies them.

`contacts_merged`: the merged contact's conversations and known addresses follow the survivor,
and the merged contact leaves a redirect (models.ContactRedirect, merged → survivor) that every
later event naming it goes through: a late or redelivered contact_created or contact_updated of
the merged contact teaches its addresses to the survivor instead of pointing them back at the
merged one. Mail from the merged address that conversations stores while the merge is applied
(the conversation took the merged contact from known_contacts a moment before) is re-pointed by
`settle_contacts` after it is written: the two take turns on a PostgreSQL advisory lock (the
merge exclusively, messages shared), so one of them always sees the other's work.
`contact_erased` (GDPR art. 17): that person's messages are redacted (subject, bodies, addresses,
attachments and the links to the raw message) and the conversations that were theirs lose their
contact, subject and snippet; the message rows stay (ids, direction, times, the Message-ID that
keeps a redelivered copy from coming back) so that the team's comments and history keep their
place. Events about the person that the outbox has not relayed yet are dropped, and the erased
contact leaves a redirect to nothing: a late contact_created or contact_updated of it is ignored.
Confirmed with `contact_messages_erased` (counts only)."""

from __future__ import annotations

from sqlalchemy import bindparam, delete, or_, select, text, update
from sqlalchemy.orm import Session

from conversations import handlers
from conversations.models import (
    ChannelAttachment,
    ChatThread,
    ContactRedirect,
    Conversation,
    KnownContact,
    Message,
)
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.db import conflict_insert, is_postgres, utcnow
from mailroom_shared.erasure import drop_pending_events, erasure_keys, mentions
from mailroom_shared.messaging.outbox import Outbox

ERASED = "[erased]"
GONE = object()  # current_contact's answer for an erased contact
MAX_REDIRECTS = 50  # a chain of merges longer than this is a loop (it cannot be: merges only go to survivors)


def _merge_turn(session: Session, exclusive: bool) -> None:
    """The merge and the messages' check take turns on a PostgreSQL advisory lock (transaction-
    scoped). handlers.receive_message takes the messages' shared turn in its first statement."""
    if is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:k)" if exclusive else
                             "SELECT pg_advisory_xact_lock_shared(:k)"), {"k": handlers.CONTACT_MERGE_LOCK})


def current_contact(session: Session, contact_id: str | None):
    """The contact `contact_id` is now: itself, the survivor it was merged into (through any chain
    of merges), or GONE when it (or its survivor) was erased."""
    seen = 0
    while contact_id and seen < MAX_REDIRECTS:
        redirect = session.get(ContactRedirect, contact_id)
        if redirect is None:
            return contact_id
        if redirect.survivor_id is None:
            return GONE
        contact_id, seen = redirect.survivor_id, seen + 1
    return contact_id


def _redirect(session: Session, contact_id: str, survivor_id: str | None) -> None:
    """`contact_id` is gone into `survivor_id` (None: erased); the redirects that led to it follow."""
    statement = conflict_insert(session, ContactRedirect).values(contact_id=contact_id, survivor_id=survivor_id,
                                                                 created_at=utcnow())
    session.execute(statement.on_conflict_do_update(index_elements=[ContactRedirect.contact_id],
                                                    set_={"survivor_id": survivor_id}))
    session.execute(update(ContactRedirect).where(ContactRedirect.survivor_id == contact_id)
                    .values(survivor_id=survivor_id))


def learn_contact(session: Session, data: dict) -> None:
    """contacts' contact_created, through the redirects (a late one of a merged contact teaches
    its addresses to the survivor; one of an erased contact is ignored)."""
    contact_id = current_contact(session, data["contact_id"])
    if contact_id is not GONE:
        handlers.learn_contact(session, contact_id, data.get("emails") or [])


def update_contact(session: Session, data: dict) -> None:
    """contacts' contact_updated, through the redirects. A late one of a merged contact only adds:
    an address it gave up before the merge is not the survivor's to lose."""
    contact_id = current_contact(session, data["contact_id"])
    if contact_id is GONE:
        return
    if contact_id != data["contact_id"]:
        handlers.learn_contact(session, contact_id, data.get("emails") or [])
    else:
        handlers.update_contact(session, contact_id, data.get("emails") or [], data.get("removed") or [])


def _message_addresses(data: dict) -> list[str]:
    found = []
    for key in ("attributed_to", "sender"):
        value = data.get(key)
        if isinstance(value, dict):
            found.append(try_normalise_email(value.get("email")))
    return sorted({a for a in found if a})


# built once: settle_contacts runs after every inbound message
# table columns, not mapped attributes: it runs for every message, and a select of mapped
# attributes takes the ORM's compile and loading steps (issue #16)
_STALE_CONTACTS = select(Conversation.__table__.c.id, Conversation.__table__.c.contact_id).join(
    ContactRedirect.__table__, ContactRedirect.__table__.c.contact_id == Conversation.__table__.c.contact_id).where(
    Conversation.__table__.c.contact_email.in_(bindparam("addresses", expanding=True)))


def settle_contacts(session: Session, data: dict, *, turn_taken: bool = False) -> int:
    """After a message is stored: a conversation of its sender that took a contact which a merge
    or an erasure has meanwhile replaced (read from known_contacts just before the redirect was
    committed) is re-pointed. Takes its turn with follow_merge: if the merge committed first its
    redirect is seen here; if this came first, the merge's own update sees this conversation.
    `turn_taken`: the transaction holds its shared turn already (handlers.receive_message takes
    it before any row lock, one statement less per message)."""
    addresses = _message_addresses(data)
    if not addresses:
        return 0
    if not turn_taken:
        _merge_turn(session, exclusive=False)
    fixed = 0
    stale = session.execute(_STALE_CONTACTS, {"addresses": addresses}).all()
    for conversation_id, contact_id in stale:
        now = current_contact(session, contact_id)
        session.execute(update(Conversation).where(Conversation.id == conversation_id).values(
            contact_id=None if now is GONE else now))
        fixed += 1
    return fixed


def follow_merge(session: Session, data: dict) -> int:
    """The merged contact's conversations and addresses are the survivor's; returns how many
    conversations moved."""
    merged_id = data["merged_id"]
    _merge_turn(session, exclusive=True)
    survivor_id = current_contact(session, data["survivor_id"])
    if survivor_id is GONE:  # the survivor was erased since: what followed it is erased already
        _redirect(session, merged_id, None)
        return 0
    _redirect(session, merged_id, survivor_id)
    session.execute(update(KnownContact).where(KnownContact.contact_id == merged_id).values(contact_id=survivor_id))
    moved = session.execute(update(Conversation).where(Conversation.contact_id == merged_id)
                            .values(contact_id=survivor_id)).rowcount
    for email in {e for e in (try_normalise_email(x) for x in data.get("emails") or []) if e}:
        if session.get(KnownContact, email) is None:
            session.add(KnownContact(email=email, contact_id=survivor_id))
        # a conversation of one of the survivor's addresses that never learnt its contact
        session.execute(update(Conversation).where(Conversation.contact_email == email,
                                                   Conversation.contact_id.is_(None)).values(contact_id=survivor_id))
    return moved


def erase_contact(session: Session, outbox: Outbox, data: dict) -> dict:
    keys = erasure_keys(data)
    emails, handles = list(keys.emails), list(keys.handles)
    conversation_match = [Conversation.contact_id == data["contact_id"]]
    if emails:
        conversation_match.append(Conversation.contact_email.in_(emails))
    if handles:
        conversation_match.append(Conversation.external_thread_id.in_(handles))
    conversations = session.execute(select(Conversation).where(or_(*conversation_match))).scalars().all()
    conversation_ids = [c.id for c in conversations]
    message_match = [Message.conversation_id.in_(conversation_ids or [""])]
    if data.get("intake_ids"):
        message_match.append(Message.intake_id.in_(data["intake_ids"]))
    if emails or handles:  # theirs elsewhere: sent by them, or our email to them
        message_match += [mentions(Message.sender, emails + handles), mentions(Message.attributed_to, emails),
                          (Message.direction == "out") & or_(mentions(Message.to, emails + handles),
                                                             mentions(Message.cc, emails + handles))]
    messages = session.execute(select(Message).where(or_(*message_match))).scalars().all()
    attachments = 0
    for message in messages:
        attachments += len(message.attachments or [])
        message.subject, message.text, message.html, message.snippet = ERASED, None, None, ""
        message.sender = message.attributed_to = message.forward = None
        message.to, message.cc, message.reply_to = [], [], []
        message.attachments, message.full_message_url, message.intake_id = [], None, None
        message.html_truncated, message.remote_images_blocked = False, 0
        # only the yes/no flags stay: others carry a chat sender's handle or a delivery answer naming them
        message.flags = {**{k: v for k, v in (message.flags or {}).items() if isinstance(v, bool)}, "erased": True}
    message_ids = [m.id for m in messages]
    attachments += session.execute(delete(ChannelAttachment).where(
        ChannelAttachment.message_id.in_(message_ids or [""]))).rowcount
    for conversation in conversations:
        conversation.contact_id = conversation.contact_email = conversation.contact_name = None
        conversation.subject, conversation.snippet = ERASED, ""
        if conversation.external_thread_id in handles:
            conversation.external_thread_id = None
    if handles:  # their chat threads: a new message from them starts afresh, under a new contact
        session.execute(delete(ChatThread).where(ChatThread.external_thread_id.in_(handles)))
    known = session.execute(delete(KnownContact).where(or_(
        KnownContact.contact_id == data["contact_id"], KnownContact.email.in_(emails or [""])))).rowcount
    _redirect(session, data["contact_id"], None)
    events = drop_pending_events(session, outbox.table, keys)
    erased = {"conversations": len(conversations), "messages": len(messages), "attachments": attachments,
              "known_addresses": known, "pending_events": events}
    outbox.record(session, "contact_messages_erased", data["contact_id"], {
        "erasure_id": data["erasure_id"], "contact_id": data["contact_id"], "erased": erased})
    return erased
