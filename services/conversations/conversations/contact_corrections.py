"""contacts' corrections (issue #17) as conversations applies them.

`contacts_merged`: the merged contact's conversations and known addresses follow the survivor.
`contact_erased` (GDPR art. 17): that person's messages are redacted (subject, bodies, addresses,
attachments and the links to the raw message) and the conversations that were theirs lose their
contact, subject and snippet; the message rows stay (ids, direction, times, the Message-ID that
keeps a redelivered copy from coming back) so that the team's comments and history keep their
place. Confirmed with `contact_messages_erased` (counts only)."""

from __future__ import annotations

from sqlalchemy import Text, cast, delete, false, func, or_, select, update
from sqlalchemy.orm import Session

from conversations.models import ChannelAttachment, ChatThread, Conversation, KnownContact, Message
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.messaging.outbox import Outbox

ERASED = "[erased]"


def follow_merge(session: Session, data: dict) -> int:
    """The merged contact's conversations and addresses are the survivor's; returns how many
    conversations moved."""
    survivor_id, merged_id = data["survivor_id"], data["merged_id"]
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


def _mentions(column, values: list[str]):
    """The JSON column names one of the (normalised, lower-case) addresses or handles, whatever
    case the header had."""
    if not values:
        return false()
    return or_(*(func.lower(cast(column, Text)).contains(f'"{v.lower()}"', autoescape=True) for v in values))


def erase_contact(session: Session, outbox: Outbox, data: dict) -> dict:
    emails = sorted({e for e in (try_normalise_email(x) for x in data.get("emails") or []) if e})
    handles = sorted({str(i.get("value")) for i in data.get("identities") or [] if i.get("value")})
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
        message_match += [_mentions(Message.sender, emails + handles), _mentions(Message.attributed_to, emails),
                          (Message.direction == "out") & or_(_mentions(Message.to, emails + handles),
                                                             _mentions(Message.cc, emails + handles))]
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
    erased = {"conversations": len(conversations), "messages": len(messages), "attachments": attachments,
              "known_addresses": known}
    outbox.record(session, "contact_messages_erased", data["contact_id"], {
        "erasure_id": data["erasure_id"], "contact_id": data["contact_id"], "erased": erased})
    return erased
