"""What conversations does for outbound (issue #4), kept in one mixin of ConversationsService:

- RPC `get_inbox_identities` / `get_reply_context`: the From identities of an inbox, and what a
  reply or forward needs from a conversation (the message replied to, the thread's Message-IDs,
  the reply token, the channel the conversation came in on);
- handlers of outbound's delivery events: `email_queued` / `email_sent` store our message in its
  conversation (direction "out", our Message-ID, so that the customer's answer threads back by
  In-Reply-To/References), creating the conversation of a composed email; `email_deferred` /
  `email_failed` / `email_bounced` record the delivery state on the stored message;
- `GET /api/inboxes/{id}/sent`: the inbox's Sent view (our messages, newest first).

The delivery state lives in the message's `flags` (`flags.delivery` = {state, reason, …}) and is
shown through the existing `flags.reasons` as `delivery:<state>[: reason]`, so a failed delivery
is visible on its conversation without a schema change.
"""

from __future__ import annotations

import datetime as dt

from nameko.rpc import rpc
from nameko.web.handlers import http
from sqlalchemy import select
from sqlalchemy.orm import Session

from conversations import access, domain, queries
from conversations.models import Conversation, Inbox, KnownContact, Message, outbox, processed_events
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.auth import Principal, authenticate
from mailroom_shared.db import aware, parse_time, utcnow
from mailroom_shared.events.envelope import parse_envelope
from mailroom_shared.http import decode_cursor, encode_cursor, json_endpoint, page_limit
from mailroom_shared.messaging.idempotency import ProcessedEvents
from mailroom_shared.messaging.nameko_adapters import PoisonMessage, reliable_event_handler
from mailroom_shared.messaging.outbox import Outbox
from mailroom_shared.pagination import newest_first

OUTBOX = Outbox(outbox)
PROCESSED = ProcessedEvents(processed_events)
DELIVERY_RANK = {"queued": 0, "deferred": 1, "sent": 2, "failed": 3, "bounced": 4}
MAX_THREAD_MESSAGES = 50


class OutboundMessageNotYetStored(Exception):
    """A delivery state arrived before email_queued was stored: retried with backoff."""


# --- read side (RPC) --------------------------------------------------------------------------------

def _iso(value) -> str | None:
    if value is None:
        return None
    value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return value.isoformat()


def _identities(inbox: Inbox) -> dict:
    primary = next((c.address for c in inbox.channels if c.is_primary), None)
    return {"inbox_id": inbox.id, "name": inbox.name, "primary_address": primary,
            "identities": [{"email": c.address, "name": c.display_name, "primary": c.is_primary}
                           for c in inbox.channels]}


def _message(message: Message) -> dict:
    return {
        "id": message.id, "direction": message.direction, "rfc_message_id": message.rfc_message_id,
        "subject": message.subject, "sender": message.sender, "attributed_to": message.attributed_to,
        "forward": message.forward, "to": message.to or [], "cc": message.cc or [], "reply_to": message.reply_to or [],
        "in_reply_to": message.in_reply_to or [], "references": message.references or [], "text": message.text,
        "html": message.html, "date": message.date_header, "received_at": _iso(message.received_at),
        "channel_address": message.channel_address,
    }


def reply_context(session: Session, conversation_id: str, message_id: str | None,
                  include_thread: bool) -> dict | None:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        return None
    inbox = session.get(Inbox, conversation.inbox_id)
    ordered = select(Message).where(Message.conversation_id == conversation.id).order_by(
        Message.received_at.desc(), Message.created_at.desc(), Message.id.desc())
    if message_id:
        message = session.get(Message, message_id)
        if message is not None and message.conversation_id != conversation.id:
            message = None
    else:  # the latest inbound message, else the latest of ours
        message = session.execute(ordered.where(Message.direction == "in").limit(1)).scalar_one_or_none() \
            or session.execute(ordered.limit(1)).scalar_one_or_none()
    channels = {c.address for c in inbox.channels}
    first_inbound = session.execute(
        select(Message.channel_address).where(Message.conversation_id == conversation.id, Message.direction == "in")
        .order_by(Message.received_at, Message.id).limit(1)).scalar_one_or_none()
    candidates = [message.channel_address if message is not None else None, first_inbound]
    channel_address = next((c for c in candidates if c and c in channels), None)
    primary = next((c.address for c in inbox.channels if c.is_primary), None)
    result = {
        "conversation": {"id": conversation.id, "inbox_id": conversation.inbox_id, "subject": conversation.subject,
                         "status": conversation.status, "reply_token": conversation.reply_token,
                         "created_at": _iso(conversation.created_at),
                         "contact": {"email": conversation.contact_email, "name": conversation.contact_name}},
        "inbox": _identities(inbox),
        "message": _message(message) if message is not None else None,
        "channel_address": channel_address or primary,
        "reply_address": domain.reply_address(channel_address or primary, conversation.reply_token)
        if (channel_address or primary) else None,
    }
    if include_thread:
        rows = session.execute(select(Message).where(Message.conversation_id == conversation.id)
                               .order_by(Message.received_at, Message.created_at, Message.id)
                               .limit(MAX_THREAD_MESSAGES)).scalars().all()
        result["thread"] = [_message(m) for m in rows]
    return result


# --- write side (outbound's events) --------------------------------------------------------------------

def _delivery_flags(flags: dict | None, state: str, details: dict) -> dict:
    flags = dict(flags or {})
    reason = details.get("reason")
    label = f"delivery:{state}" + (f": {reason}" if reason else "")
    if state == "sent" and details.get("smtp_queue_id"):
        label += f" (queue id {details['smtp_queue_id']})"
    flags["reasons"] = [r for r in flags.get("reasons") or [] if not str(r).startswith("delivery:")] + [label[:1000]]
    flags["delivery"] = {"state": state, **{k: v for k, v in details.items() if v is not None}}
    return flags


def _apply_state(message: Message, state: str, details: dict) -> bool:
    current = (message.flags or {}).get("delivery", {}).get("state", "queued")
    if DELIVERY_RANK[state] < DELIVERY_RANK.get(current, 0):
        return False  # events of one email may arrive out of order: the later state stays
    if DELIVERY_RANK[state] == DELIVERY_RANK.get(current, 0) and state not in ("deferred", "queued"):
        return False
    message.flags = _delivery_flags(message.flags, state, details)
    return True


def _address(value: dict | None) -> dict | None:
    if not value:
        return None
    return {"name": value.get("name"), "email": value.get("email")}




def _new_conversation(session: Session, outbox: Outbox, data: dict, at: dt.datetime) -> Conversation:
    recipient = (data.get("to") or [{}])[0]
    contact_email = try_normalise_email(recipient.get("email"))
    known = session.get(KnownContact, contact_email) if contact_email else None
    token = (data.get("reply_token") or "").lower() or domain.new_reply_token()
    conversation = Conversation(
        id=data["conversation_id"], inbox_id=data["inbox_id"], subject=data.get("subject") or "(no subject)",
        status=domain.OPEN, spam=False, reply_token=token, contact_email=contact_email,
        contact_name=(recipient.get("name") or "").strip() or None, contact_id=known.contact_id if known else None,
        message_count=0, snippet="", created_at=utcnow(), last_message_at=at)
    session.add(conversation)
    session.flush()
    outbox.record(session, "conversation_created", conversation.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "subject": conversation.subject,
        "contact_email": conversation.contact_email, "contact_name": conversation.contact_name,
        "status": conversation.status, "spam": False, "reopened_from": None})
    return conversation


def store_outbound_email(session: Session, outbox: Outbox, data: dict, state: str, details: dict) -> Message:
    """Our email in its conversation (and the Sent view): one row per email, whichever of
    email_queued / email_sent arrives first; a redelivery changes nothing."""
    message = session.get(Message, data["email_id"])
    if message is not None:
        _apply_state(message, state, details)
        return message
    # an existence check: not session.get(), which loads the inbox's channels, members and teams
    if session.execute(select(Inbox.id).where(Inbox.id == data["inbox_id"])).first() is None:
        raise PoisonMessage(f"no inbox {data['inbox_id']}")
    at = parse_time(data.get("queued_at"))
    conversation = session.get(Conversation, data["conversation_id"], with_for_update=True, populate_existing=True)
    if conversation is None:
        if not data.get("new_conversation"):
            raise PoisonMessage(f"no conversation {data['conversation_id']}")
        conversation = _new_conversation(session, outbox, data, at)
    sender = _address(data.get("from_"))
    message = Message(
        id=data["email_id"], conversation_id=conversation.id, inbox_id=conversation.inbox_id,
        rfc_message_id=domain.clean_message_id(data["rfc_message_id"]), direction="out", intake_id=None,
        channel_address=try_normalise_email((sender or {}).get("email")), via="outbound",
        subject=data.get("subject") or "", sender=sender, attributed_to=sender,
        to=[_address(a) for a in data.get("to") or []], cc=[_address(a) for a in data.get("cc") or []],
        reply_to=[_address(a) for a in data.get("reply_to") or []],
        in_reply_to=list(data.get("in_reply_to") or []), references=list(data.get("references") or []),
        text=data.get("text"), html=data.get("html"), html_truncated=False, remote_images_blocked=0,
        snippet=domain.snippet(data.get("text"), data.get("html")), size=None,
        full_message_url=f"/api/outbound/emails/{data['email_id']}",
        attachments=[dict(a) for a in data.get("attachments") or []], forward=None,
        flags=_delivery_flags({"auto_submitted": bool(data.get("automatic")), "bounce": False, "spam": False,
                               "loop": False, "reasons": []}, state, details),
        date_header=None, received_at=at, created_at=utcnow())
    session.add(message)
    conversation.message_count = (conversation.message_count or 0) + 1
    if conversation.message_count == 1 or at >= aware(conversation.last_message_at):
        conversation.last_message_at = at
        conversation.snippet = message.snippet
    session.flush()
    outbox.record(session, "message_added", conversation.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "message_id": message.id,
        "rfc_message_id": message.rfc_message_id, "direction": "out", "sender": sender, "attributed_to": sender,
        "subject": message.subject, "intake_id": None, "spam": conversation.spam})
    return message


def record_delivery_state(session: Session, data: dict, state: str, details: dict) -> Message:
    message = session.get(Message, data["email_id"], with_for_update=True)
    if message is None:
        raise OutboundMessageNotYetStored(f"email {data['email_id']} is not stored yet ({state} arrived first)")
    _apply_state(message, state, details)
    return message


def sent_page(session: Session, inbox_id: str, cursor: dict | None, limit: int, principal: Principal) -> dict:
    query = newest_first(select(Message).where(Message.inbox_id == inbox_id, Message.direction == "out"),
                         Message.received_at, Message.id, cursor, limit)
    rows = session.execute(query).scalars().all()
    items = []
    for message in rows[:limit]:
        item = queries.message_view(message, principal)
        item["delivery"] = (message.flags or {}).get("delivery")
        items.append(item)
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor({"at": aware(last.received_at).isoformat(), "id": last.id})
    return {"items": items, "next_cursor": next_cursor}


def _denied(principal: dict | None, inbox: Inbox | None) -> dict | None:
    """{} (not found) / {"forbidden": …} when `principal` may not send from `inbox`; None if it may.
    Without a principal (another service calling), only existence is checked."""
    if inbox is None:
        return {}
    if principal is None:
        return None
    caller = Principal(user_id=principal["user_id"], email=principal.get("email"),
                       team_ids=frozenset(principal.get("team_ids") or ()),
                       roles=frozenset(principal.get("roles") or ()))
    if not access.can_view(caller, inbox):
        return {}
    if not access.can_act(caller, inbox):
        return {"forbidden": f"you can view the inbox {inbox.name!r} but not send from it: only its members can act"}
    return None


class OutboundApi:
    """Mixed into ConversationsService (uses its `db` and `relay`)."""

    @rpc
    def get_inbox_identities(self, inbox_id, principal=None):
        """None when there is no such inbox or the caller may not see it; {"forbidden": reason}
        when the caller (outbound passes the HTTP caller's principal) may view but not send."""
        with self.db.transaction() as session:
            inbox = session.get(Inbox, inbox_id)
            denied = _denied(principal, inbox)
            if denied is not None:
                return denied or None
            return _identities(inbox)

    @rpc
    def get_reply_context(self, conversation_id, message_id=None, include_thread=False, principal=None):
        with self.db.transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            denied = _denied(principal, session.get(Inbox, conversation.inbox_id) if conversation else None)
            if denied is not None:
                return denied or None
            return reply_context(session, conversation_id, message_id, bool(include_thread))

    @reliable_event_handler("outbound", "email_queued")
    def handle_email_queued(self, envelope):
        data = parse_envelope(envelope, "email_queued")
        self._outbound_event(envelope, "handle_email_queued", lambda session: store_outbound_email(
            session, OUTBOX, data, "queued", {}))

    @reliable_event_handler("outbound", "email_sent")
    def handle_email_sent(self, envelope):
        data = parse_envelope(envelope, "email_sent")
        self._outbound_event(envelope, "handle_email_sent", lambda session: store_outbound_email(
            session, OUTBOX, data, "sent", {"smtp_queue_id": data.get("smtp_queue_id"), "at": data.get("sent_at"),
                                            "attempts": data.get("attempts")}))

    @reliable_event_handler("outbound", "email_deferred")
    def handle_email_deferred(self, envelope):
        data = parse_envelope(envelope, "email_deferred")
        self._outbound_event(envelope, "handle_email_deferred", lambda session: record_delivery_state(
            session, data, "deferred", {"reason": data["reason"], "attempts": data["attempts"],
                                        "next_attempt_at": data["next_attempt_at"]}))

    @reliable_event_handler("outbound", "email_failed")
    def handle_email_failed(self, envelope):
        data = parse_envelope(envelope, "email_failed")
        self._outbound_event(envelope, "handle_email_failed", lambda session: record_delivery_state(
            session, data, "failed", {"reason": data["reason"], "attempts": data["attempts"],
                                      "smtp_code": data.get("smtp_code")}))

    @reliable_event_handler("outbound", "email_bounced")
    def handle_email_bounced(self, envelope):
        data = parse_envelope(envelope, "email_bounced")
        self._outbound_event(envelope, "handle_email_bounced", lambda session: record_delivery_state(
            session, data, "bounced", {"reason": data["reason"], "bounce_intake_id": data["bounce_intake_id"]}))

    def _outbound_event(self, envelope, handler: str, change) -> None:
        PROCESSED.run_once(self.db, envelope, handler, change)
        self.relay.wake()

    @http("GET", "/api/inboxes/<string:inbox_id>/sent")
    @json_endpoint
    def list_sent(self, request, inbox_id):
        """The inbox's Sent view: our messages, newest first, each with its delivery state."""
        principal = authenticate(request)
        with self.db.transaction() as session:
            access.require_view(principal, session.get(Inbox, inbox_id), f"no inbox {inbox_id}")
            return sent_page(session, inbox_id, decode_cursor(request.args.get("cursor")), page_limit(request),
                             principal)

