"""Use cases of the conversations service. They take a SQLAlchemy session (the unit of work) and
an outbox; the nameko adapters in service.py call them inside one transaction, so every state
change and the events describing it commit together."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from dataclasses import dataclass

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from conversations import domain
from conversations.access import EVERYONE, VISIBILITIES
from conversations.domain import ConversationRef, ReplyToClosed, StoredMessageRef
from conversations.models import (
    Channel,
    Comment,
    Conversation,
    ConversationMove,
    Inbox,
    InboxTeam,
    KnownContact,
    KnownUser,
    Member,
    Message,
    Ticket,
)
from mailroom_shared.addresses import InvalidAddress, normalise_email, try_normalise_email
from mailroom_shared.auth import Principal
from mailroom_shared.db import aware, conflict_insert, is_postgres, parse_time, utcnow
from mailroom_shared.messaging.outbox import Outbox

SEED_LOCK_KEY = 0x6D61696C  # pg advisory lock: replicas starting together seed one at a time
MAX_SUCCESSOR_HOPS = 50


@dataclass(frozen=True)
class Settings:
    reply_to_closed: ReplyToClosed = ReplyToClosed.REOPEN


class UnknownChannel(Exception):
    """No inbox has this address (yet): an ordinary error, so the message is retried with
    backoff — the inbox_updated that makes ingest accept it may be ahead of our own state."""


class InvalidInbox(ValueError):
    pass


class InboxConflict(Exception):
    pass


# --- inboxes -----------------------------------------------------------------------------------

def inbox_payload(inbox: Inbox) -> dict:
    """The inbox_updated data (ingest: RCPT addresses to accept; contacts: trusted forwarders)."""
    primary = next((c.address for c in inbox.channels if c.is_primary), None)
    return {
        "inbox_id": inbox.id, "name": inbox.name, "primary_address": primary,
        "channel_addresses": sorted(c.address for c in inbox.channels),
        "member_emails": sorted({m.email for m in inbox.members}),
        "visibility": inbox.visibility or EVERYONE,
        "member_user_ids": sorted({m.user_id for m in inbox.members}),
        "team_ids": sorted({t.team_id for t in inbox.teams}),
    }


def announce(session: Session, outbox: Outbox, inbox: Inbox, *, only_if_changed: bool) -> bool:
    """Record inbox_updated; with `only_if_changed`, only when it differs from the last one."""
    payload = inbox_payload(inbox)
    digest = domain.inbox_digest(payload)
    if only_if_changed and digest == inbox.announced_digest:
        return False
    outbox.record(session, "inbox_updated", inbox.id, payload)
    inbox.announced_digest = digest
    return True


def _normalised_channels(channels: list[dict]) -> list[dict]:
    try:
        result = domain.choose_primary([{**c, "address": normalise_email(c["address"])} for c in channels])
    except (InvalidAddress, ValueError) as exc:
        raise InvalidInbox(str(exc)) from exc
    addresses = [c["address"] for c in result]
    if len(set(addresses)) != len(addresses):
        raise InvalidInbox("a channel address is listed twice")
    return result


def _normalised_members(members: list[dict]) -> list[dict]:
    try:
        result = [{"user_id": m["user_id"], "email": normalise_email(m["email"])} for m in members]
    except InvalidAddress as exc:
        raise InvalidInbox(str(exc)) from exc
    if len({m["user_id"] for m in result}) != len(result):
        raise InvalidInbox("a member user_id is listed twice")
    return result


def _set_channels(session: Session, inbox: Inbox, channels: list[dict]) -> None:
    wanted = _normalised_channels(channels)
    taken = session.execute(select(Channel).where(
        Channel.address.in_([c["address"] for c in wanted]), Channel.inbox_id != inbox.id)).scalars().first()
    if taken is not None:
        raise InboxConflict(f"{taken.address} is already a channel of inbox {taken.inbox_id}")
    # Update rows in place (delete-then-insert of the same address would trip the unique key).
    current = {c.address: c for c in inbox.channels}
    keep = []
    for item in wanted:
        channel = current.get(item["address"]) or Channel(address=item["address"])
        channel.display_name = item.get("name")
        channel.is_primary = item["primary"]
        keep.append(channel)
    inbox.channels = keep


def _set_members(inbox: Inbox, members: list[dict]) -> None:
    current = {m.user_id: m for m in inbox.members}
    keep = []
    for item in _normalised_members(members):
        member = current.get(item["user_id"]) or Member(user_id=item["user_id"])
        member.email = item["email"]
        keep.append(member)
    inbox.members = keep


def _set_access(inbox: Inbox, body: dict) -> None:
    access = body.get("access")
    if access is None:
        return
    if access.get("visibility") is not None:
        if access["visibility"] not in VISIBILITIES:
            raise InvalidInbox(f"visibility must be one of {', '.join(VISIBILITIES)}")
        inbox.visibility = access["visibility"]
    if access.get("teams") is not None:
        current = {t.team_id: t for t in inbox.teams}
        inbox.teams = [current.get(team) or InboxTeam(team_id=team) for team in dict.fromkeys(access["teams"])]


def create_inbox(session: Session, outbox: Outbox, body: dict) -> Inbox:
    if body.get("key") and session.execute(select(Inbox.id).where(Inbox.key == body["key"])).first():
        raise InboxConflict(f"an inbox with key {body['key']!r} exists")
    now = utcnow()
    inbox = Inbox(id=str(uuid.uuid4()), key=body.get("key"), name=body["name"], created_at=now, updated_at=now)
    session.add(inbox)
    _set_channels(session, inbox, body["channels"])
    _set_members(inbox, body.get("members") or [])
    inbox.visibility = EVERYONE
    _set_access(inbox, body)
    session.flush()
    announce(session, outbox, inbox, only_if_changed=False)
    return inbox


def update_inbox(session: Session, outbox: Outbox, inbox: Inbox, body: dict) -> Inbox:
    """Replace the given fields; always re-announces (an operator can re-sync ingest/contacts)."""
    if "name" in body:
        inbox.name = body["name"]
    if "channels" in body:
        _set_channels(session, inbox, body["channels"])
    if "members" in body:
        _set_members(inbox, body["members"])
    _set_access(inbox, body)
    inbox.updated_at = utcnow()
    session.flush()
    announce(session, outbox, inbox, only_if_changed=False)
    return inbox


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:100] or "inbox"


def seed_inboxes(session: Session, outbox: Outbox, entries: list[dict]) -> list[tuple[Inbox, bool]]:
    """Upsert the configured inboxes (by key, default: the name slugified). inbox_updated is
    recorded when what other services need changed — so on a fresh database, once; on a
    restart with the same file, never. Inboxes no longer in the file are left alone."""
    if is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEED_LOCK_KEY})
    results = []
    for entry in entries:
        key = entry.get("key") or _slug(entry["name"])
        inbox = session.execute(select(Inbox).where(Inbox.key == key)).scalar_one_or_none()
        if inbox is None:
            now = utcnow()
            inbox = Inbox(id=str(uuid.uuid4()), key=key, name=entry["name"], created_at=now, updated_at=now)
            session.add(inbox)
        before = domain.inbox_digest(inbox_payload(inbox)) if inbox.channels else None
        inbox.name = entry["name"]
        _set_channels(session, inbox, entry["channels"])
        _set_members(inbox, entry.get("members") or [])
        if inbox.visibility is None:
            inbox.visibility = EVERYONE
        _set_access(inbox, entry)
        session.flush()
        if domain.inbox_digest(inbox_payload(inbox)) != before:
            inbox.updated_at = utcnow()
        results.append((inbox, announce(session, outbox, inbox, only_if_changed=True)))
    return results


# --- inbound messages --------------------------------------------------------------------------

@dataclass(frozen=True)
class Received:
    message: Message
    conversation: Conversation
    placement: domain.Placement | None  # None: a duplicate, nothing changed


def _ref(conversation: Conversation) -> ConversationRef:
    return ConversationRef(conversation.id, conversation.inbox_id, conversation.status, conversation.spam,
                           conversation.reply_token)




def _incoming(inbox_id: str, data: dict) -> domain.Incoming:
    flags = data.get("flags") or {}
    return domain.Incoming(
        inbox_id=inbox_id, rfc_message_id=domain.clean_message_id(data["message_id"]),
        subject=data.get("subject") or "", reply_token=data.get("reply_token"),
        in_reply_to=tuple(data.get("in_reply_to") or ()), references=tuple(data.get("references") or ()),
        spam=bool(flags.get("spam")),
        automatic=bool(flags.get("auto_submitted") or flags.get("bounce") or flags.get("loop")),
    )


def _find_thread(session: Session, incoming: domain.Incoming) -> domain.ThreadMatch | None:
    by_token: dict[str, ConversationRef] = {}
    token = (incoming.reply_token or "").strip().lower()
    if token:
        for conversation in session.execute(select(Conversation).where(
                Conversation.reply_token == token, Conversation.inbox_id == incoming.inbox_id)).scalars():
            by_token[token] = _ref(conversation)
    by_message_id: dict[str, StoredMessageRef] = {}
    ids = domain.lookup_ids(incoming)
    if ids:
        rows = session.execute(
            select(Message.rfc_message_id, Message.inbox_id, Conversation)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Message.inbox_id == incoming.inbox_id, Message.rfc_message_id.in_(ids))).all()
        for rfc_id, inbox_id, conversation in rows:
            by_message_id[rfc_id] = StoredMessageRef(inbox_id, rfc_id, _ref(conversation))
    return domain.find_thread(incoming, by_token, by_message_id)


def _find_moved_thread(session: Session, incoming: domain.Incoming) -> domain.ThreadMatch | None:
    """A reply that reached the old inbox of a conversation moved away from it (by reply token,
    In-Reply-To or References, as in the inbox itself): it follows the conversation."""
    moved = select(ConversationMove.conversation_id).where(ConversationMove.from_inbox_id == incoming.inbox_id)
    token = (incoming.reply_token or "").strip().lower()
    if token:
        conversation = session.execute(select(Conversation).where(
            Conversation.reply_token == token, Conversation.id.in_(moved))).scalar_one_or_none()
        if conversation is not None:
            return domain.ThreadMatch(_ref(conversation), "reply_token", token)
    for key in domain.lookup_ids(incoming):
        conversation = session.execute(
            select(Conversation).join(Message, Message.conversation_id == Conversation.id)
            .where(Message.rfc_message_id == key, Conversation.id.in_(moved)).limit(1)).scalar_one_or_none()
        if conversation is not None:
            field = "in_reply_to" if key in {domain.clean_message_id(i) for i in incoming.in_reply_to} \
                else "references"
            return domain.ThreadMatch(_ref(conversation), field, key)
    return None


def _follow_successors(session: Session, match: domain.ThreadMatch) -> domain.ThreadMatch:
    """A reply to a closed conversation that already continued in a linked one goes there."""
    current = match.conversation
    for _ in range(MAX_SUCCESSOR_HOPS):
        if current.status != domain.CLOSED:
            break
        successor = session.execute(
            select(Conversation).where(Conversation.reopened_from == current.id,
                                       Conversation.spam == current.spam)
            .order_by(Conversation.created_at.desc()).limit(1)).scalar_one_or_none()
        if successor is None:
            break
        current = _ref(successor)
    return match if current is match.conversation else domain.ThreadMatch(current, match.matched_by, match.key)


def _address(value: dict | None) -> dict | None:
    if not value:
        return None
    return {"name": value.get("name"), "email": value.get("email")}


def receive_message(session: Session, outbox: Outbox, data: dict, settings: Settings) -> Received:
    """Thread, store and announce one inbound message (message_received data)."""
    address = try_normalise_email(data["channel_address"])
    channel = session.execute(select(Channel).where(Channel.address == address)).scalar_one_or_none() \
        if address else None
    if channel is None:
        raise UnknownChannel(f"no inbox has the channel {data['channel_address']!r} (yet)")
    incoming = _incoming(channel.inbox_id, data)
    if not incoming.rfc_message_id:
        raise ValueError("message_received without a Message-ID")  # ingest always generates one

    duplicate = session.execute(select(Message).where(
        Message.inbox_id == incoming.inbox_id, Message.rfc_message_id == incoming.rfc_message_id)
    ).scalar_one_or_none()
    if duplicate is not None:
        return Received(duplicate, session.get(Conversation, duplicate.conversation_id), None)

    match = _find_thread(session, incoming)
    if match is None:
        match = _find_moved_thread(session, incoming)
        if match is not None:  # stored in the inbox the conversation lives in now
            incoming = dataclasses.replace(incoming, inbox_id=match.conversation.inbox_id)
            duplicate = session.execute(select(Message).where(
                Message.inbox_id == incoming.inbox_id, Message.rfc_message_id == incoming.rfc_message_id)
            ).scalar_one_or_none()
            if duplicate is not None:
                return Received(duplicate, session.get(Conversation, duplicate.conversation_id), None)
    if match is not None:
        match = _follow_successors(session, match)
    placement = domain.place(incoming, match, settings.reply_to_closed)
    received_at = parse_time(data.get("received_at"))
    message_uuid = str(uuid.uuid4())

    events: list[tuple[str, str, dict]] = []  # recorded together at the end: one INSERT
    if placement.action == "new":
        conversation = _new_conversation(session, incoming, data, placement, received_at)
    else:
        # lock the row: concurrent messages of one conversation update its counters in turn
        conversation = session.get(Conversation, placement.conversation.id, with_for_update=True,
                                   populate_existing=True)
        if placement.action == "reopen":
            conversation.status, conversation.closed_at = domain.OPEN, None
            events.append(("conversation_reopened", conversation.id, {
                "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "reason": "reply",
                "message_id": message_uuid}))

    message = _store_message(session, message_uuid, conversation, incoming, data, address, received_at)
    if placement.action == "new":
        events.append(_conversation_created(conversation))
    events.append(("message_added", conversation.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "message_id": message.id,
        "rfc_message_id": message.rfc_message_id, "direction": "in", "sender": _address(data.get("sender")),
        "attributed_to": _address(data.get("attributed_to")), "subject": message.subject,
        "intake_id": data.get("intake_id"), "spam": conversation.spam,
    }))
    outbox.record_many(session, events)
    return Received(message, conversation, placement)


def _new_conversation(session: Session, incoming: domain.Incoming, data: dict,
                      placement: domain.Placement, received_at: dt.datetime) -> Conversation:
    """Added, not yet flushed: its first message sets the counters, and both rows are then
    inserted together (flushing here cost one more UPDATE per new conversation)."""
    attributed = data.get("attributed_to") or {}
    contact_email = try_normalise_email(attributed.get("email"))
    known = session.get(KnownContact, contact_email) if contact_email else None
    conversation = Conversation(
        id=str(uuid.uuid4()), inbox_id=incoming.inbox_id, subject=incoming.subject or "(no subject)",
        status=domain.OPEN, spam=incoming.spam, reply_token=domain.new_reply_token(),
        contact_email=contact_email, contact_name=(attributed.get("name") or "").strip() or None,
        contact_id=known.contact_id if known else None, reopened_from=placement.reopened_from,
        related_conversation_id=placement.related_conversation_id, message_count=0, snippet="",
        created_at=utcnow(), last_message_at=received_at,
    )
    session.add(conversation)
    return conversation


def _conversation_created(conversation: Conversation) -> tuple[str, str, dict]:
    return "conversation_created", conversation.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "subject": conversation.subject,
        "contact_email": conversation.contact_email, "contact_name": conversation.contact_name,
        "status": conversation.status, "spam": conversation.spam, "reopened_from": conversation.reopened_from,
    }


def _store_message(session: Session, message_id: str, conversation: Conversation, incoming: domain.Incoming,
                   data: dict, channel_address: str, received_at: dt.datetime) -> Message:
    message = Message(
        id=message_id, conversation_id=conversation.id, inbox_id=incoming.inbox_id,
        rfc_message_id=incoming.rfc_message_id, direction="in", intake_id=data.get("intake_id"),
        channel_address=channel_address, via=data.get("via"), subject=data.get("subject") or "",
        sender=_address(data.get("sender")), attributed_to=_address(data.get("attributed_to")),
        to=[_address(a) for a in data.get("to") or []], cc=[_address(a) for a in data.get("cc") or []],
        reply_to=[_address(a) for a in data.get("reply_to") or []],
        in_reply_to=list(data.get("in_reply_to") or []), references=list(data.get("references") or []),
        text=data.get("text"), html=data.get("html"), html_truncated=bool(data.get("html_truncated")),
        remote_images_blocked=int(data.get("remote_images_blocked") or 0),
        snippet=domain.snippet(data.get("text"), data.get("html")), size=data.get("size"),
        full_message_url=data.get("raw_url"), attachments=[dict(a) for a in data.get("attachments") or []],
        forward=data.get("forward"), flags=dict(data.get("flags") or {}), date_header=data.get("date"),
        received_at=received_at, created_at=utcnow(),
    )
    session.add(message)
    conversation.message_count = (conversation.message_count or 0) + 1
    if conversation.message_count == 1 or received_at >= aware(conversation.last_message_at):
        conversation.last_message_at = received_at
        conversation.snippet = message.snippet
    session.flush()  # the unique (inbox_id, rfc_message_id) decides a race: the loser is retried
    return message


# --- status ------------------------------------------------------------------------------------

class ActionRefused(Exception):
    """A request that conflicts with the conversation's current state (HTTP 409)."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details


class InvalidAction(ValueError):
    """A request that can never succeed as written (HTTP 400)."""


def close_conversation(session: Session, outbox: Outbox, conversation: Conversation,
                       closed_by: str | None = None, close_ticket: bool = False) -> bool:
    """Close the conversation and, with `close_ticket`, its associated ticket too."""
    if conversation.status == domain.CLOSED:
        return False
    conversation.status, conversation.closed_at = domain.CLOSED, utcnow()
    ticket = session.get(Ticket, conversation.ticket_id, with_for_update=True) if conversation.ticket_id else None
    ticket_closed = False
    if ticket is not None and close_ticket and ticket.status != domain.CLOSED:
        ticket.status, ticket.closed_at = domain.CLOSED, utcnow()
        ticket_closed = True
    outbox.record(session, "conversation_closed", conversation.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "reason": "api",
        "closed_by": closed_by, "ticket_id": conversation.ticket_id, "ticket_closed": ticket_closed})
    if ticket_closed:
        outbox.record(session, "ticket_closed", ticket.id, {
            "ticket_id": ticket.id, "conversation_id": conversation.id, "closed_by": closed_by})
    return True


def reopen_conversation(session: Session, outbox: Outbox, conversation: Conversation,
                        reopened_by: str | None = None) -> bool:
    """Reopen the conversation (its ticket keeps its own status)."""
    if conversation.status == domain.OPEN:
        return False
    conversation.status, conversation.closed_at = domain.OPEN, None
    outbox.record(session, "conversation_reopened", conversation.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "reason": "api",
        "message_id": None})
    return True


# --- users, assignment, comments -----------------------------------------------------------------

def remember_user(session: Session, principal: Principal) -> None:
    """Keep the directory of users as their tokens describe them (assignees, @mentions)."""
    teams = sorted(principal.team_ids)
    known = session.get(KnownUser, principal.user_id)
    if known is None:
        session.add(KnownUser(user_id=principal.user_id, email=principal.email, team_ids=teams, updated_at=utcnow()))
    elif known.email != principal.email or list(known.team_ids or []) != teams:
        known.email, known.team_ids, known.updated_at = principal.email, teams, utcnow()


def user_is_member(session: Session, inbox: Inbox, user_id: str) -> bool:
    """An explicit member, or a known user (seen with a valid token) whom the inbox's access
    includes: everyone, or one of its teams."""
    if any(m.user_id == user_id for m in inbox.members):
        return True
    known = session.get(KnownUser, user_id)
    if known is None:
        return False
    return inbox.visibility == EVERYONE or bool(set(known.team_ids or []) & {t.team_id for t in inbox.teams})


UNSET = object()


def assign(session: Session, outbox: Outbox, conversation: Conversation, inbox: Inbox, assignee: str | None,
           by: str, expected=UNSET) -> bool:
    """Assign (reassign, or unassign with None). `expected` (the assignee the caller saw) makes it
    a compare-and-set: of several concurrent assignments of one conversation, one wins and the
    others get ActionRefused. The caller holds the conversation's row lock."""
    current = conversation.assignee_user_id
    if expected is not UNSET and expected != current:
        raise ActionRefused("the conversation was assigned meanwhile", {"assignee_user_id": current})
    if assignee is not None and not user_is_member(session, inbox, assignee):
        raise InvalidAction(f"{assignee} is not a member of the inbox {inbox.name!r}")
    if assignee == current:
        return False
    conversation.assignee_user_id = assignee
    conversation.assigned_at = utcnow() if assignee else None
    outbox.record(session, "conversation_assigned", conversation.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "assignee_user_id": assignee,
        "previous_assignee_user_id": current, "assigned_by": by})
    return True


_MENTION = re.compile(r"(?<![\w.])@([\w.+-]+(?:@[\w-]+(?:\.[\w-]+)+)?)")


def _member_ids_by_handle(session: Session, inbox: Inbox, handles: set[str]) -> dict[str, str]:
    """@handle (a user id or an email) → user id, for members of the inbox."""
    found: dict[str, str] = {}
    for member in inbox.members:
        for handle in (member.user_id, member.email):
            if handle and handle.lower() in handles:
                found[handle.lower()] = member.user_id
    for known in session.execute(select(KnownUser)).scalars() if handles - set(found) else ():
        for handle in (known.user_id, known.email):
            if handle and handle.lower() in handles and handle.lower() not in found \
                    and user_is_member(session, inbox, known.user_id):
                found[handle.lower()] = known.user_id
    return found


def add_comment(session: Session, outbox: Outbox, conversation: Conversation, inbox: Inbox,
                principal: Principal, body: str, mentions: list[str]) -> Comment:
    """An internal note. Mentions: the explicit `mentions` (user ids, each must be a member) and
    every @user-id / @email in the text that names a member (other @words are plain text)."""
    for user_id in mentions:
        if not user_is_member(session, inbox, user_id):
            raise InvalidAction(f"cannot mention {user_id}: not a member of the inbox {inbox.name!r}")
    handles = {h.lower().rstrip(".") for h in _MENTION.findall(body)}
    resolved = _member_ids_by_handle(session, inbox, handles) if handles else {}
    mentioned = list(dict.fromkeys([*mentions, *resolved.values()]))
    comment = Comment(id=str(uuid.uuid4()), conversation_id=conversation.id, author_user_id=principal.user_id,
                      author_email=principal.email, body=body, mentions=mentioned, created_at=utcnow())
    session.add(comment)
    outbox.record(session, "comment_added", conversation.id, {
        "comment_id": comment.id, "conversation_id": conversation.id, "inbox_id": conversation.inbox_id,
        "author_user_id": principal.user_id, "body": body, "mentions": mentioned})
    return comment


# --- tickets -----------------------------------------------------------------------------------

def associate_ticket(session: Session, outbox: Outbox, conversation: Conversation, by: str,
                     ticket: Ticket | None = None, subject: str | None = None) -> Ticket:
    """Associate `ticket`, or create one (subject: given, else the conversation's)."""
    created = ticket is None
    if created:
        ticket = Ticket(id=str(uuid.uuid4()), subject=(subject or conversation.subject).strip() or "(no subject)",
                        status=domain.OPEN, created_by=by, created_at=utcnow())
        session.add(ticket)
        session.flush()
    if conversation.ticket_id == ticket.id:
        return ticket
    conversation.ticket_id = ticket.id
    outbox.record(session, "ticket_associated", ticket.id, {
        "ticket_id": ticket.id, "conversation_id": conversation.id, "inbox_id": conversation.inbox_id,
        "subject": ticket.subject, "status": ticket.status, "created": created, "associated_by": by})
    return ticket


# --- moves and spam ----------------------------------------------------------------------------

def move_conversation(session: Session, outbox: Outbox, conversation: Conversation, target: Inbox,
                      by: str) -> bool:
    """Move to `target`: the messages, comments and ticket stay with the conversation (history
    kept); its messages are scoped to the new inbox so replies thread there; the assignee is
    unassigned when not a member of the new inbox. The caller checked access to both inboxes."""
    source_id = conversation.inbox_id
    if source_id == target.id:
        return False
    ids = list(session.execute(select(Message.rfc_message_id).where(
        Message.conversation_id == conversation.id)).scalars())
    clash = session.execute(select(Message.rfc_message_id).where(
        Message.inbox_id == target.id, Message.rfc_message_id.in_(ids)).limit(1)).scalar_one_or_none() if ids else None
    if clash is not None:
        raise ActionRefused("the target inbox already holds a copy of a message of this conversation "
                            "(the email reached both inboxes)", {"rfc_message_id": clash})
    session.execute(update(Message).where(Message.conversation_id == conversation.id).values(inbox_id=target.id))
    conversation.inbox_id = target.id
    session.add(ConversationMove(conversation_id=conversation.id, from_inbox_id=source_id, to_inbox_id=target.id,
                                 moved_by=by, moved_at=utcnow()))
    unassigned = False
    if conversation.assignee_user_id and not user_is_member(session, target, conversation.assignee_user_id):
        previous, conversation.assignee_user_id, conversation.assigned_at = conversation.assignee_user_id, None, None
        unassigned = True
        outbox.record(session, "conversation_assigned", conversation.id, {
            "conversation_id": conversation.id, "inbox_id": target.id, "assignee_user_id": None,
            "previous_assignee_user_id": previous, "assigned_by": None})
    outbox.record(session, "conversation_moved", conversation.id, {
        "conversation_id": conversation.id, "from_inbox_id": source_id, "to_inbox_id": target.id,
        "inbox_id": target.id, "moved_by": by, "unassigned": unassigned})
    return True


def mark_spam(session: Session, outbox: Outbox, conversation: Conversation, spam: bool, by: str) -> bool:
    """Mark spam (it leaves the inbox's views for the spam view) or not spam (it comes back, and
    the event carries the contact that contacts held back while it was spam)."""
    if conversation.spam == spam:
        return False
    conversation.spam = spam
    intake_ids = [] if spam else [i for i in session.execute(select(Message.intake_id).where(
        Message.conversation_id == conversation.id, Message.intake_id.is_not(None))
        .order_by(Message.received_at)).scalars()]
    outbox.record(session, "conversation_spam_marked", conversation.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "spam": spam, "marked_by": by,
        "contact_email": conversation.contact_email, "contact_name": conversation.contact_name,
        "intake_ids": intake_ids})
    return True


# --- contacts ----------------------------------------------------------------------------------

def learn_contact(session: Session, contact_id: str, emails: list[str]) -> None:
    for email in {e for e in (try_normalise_email(x) for x in emails) if e}:
        # one upsert (merge() read the row first)
        known = conflict_insert(session, KnownContact).values(email=email, contact_id=contact_id)
        session.execute(known.on_conflict_do_update(index_elements=[KnownContact.email],
                                                    set_={"contact_id": contact_id}))
        session.execute(update(Conversation).where(
            Conversation.contact_email == email, Conversation.contact_id.is_(None)).values(contact_id=contact_id))


# --- attribution ---------------------------------------------------------------------------------

def correct_attribution(session: Session, outbox: Outbox, conversation: Conversation, message_id: str,
                        email: str, name: str | None, by: str) -> dict:
    """Give an inbound message to another person (auditable: the event keeps the previous one).
    When the message is the one the conversation's contact came from, the conversation follows."""
    message = session.get(Message, message_id)
    if message is None or message.conversation_id != conversation.id:
        raise InvalidAction(f"message {message_id} is not in conversation {conversation.id}")
    if message.direction != "in":
        raise InvalidAction("only inbound messages are attributed to a sender")
    normalised = try_normalise_email(email)
    if normalised is None:
        raise InvalidAction(f"not a valid email address: {email!r}")
    previous = dict(message.attributed_to or {})
    new = {"name": name if name is not None else None, "email": normalised}
    if (previous.get("email") or "").lower() == normalised and previous.get("name") == new["name"]:
        return {"message_id": message.id, "attributed_to": new, "changed": False}
    message.attributed_to = new
    if (conversation.contact_email or "").lower() == (previous.get("email") or "").lower():
        conversation.contact_email, conversation.contact_name, conversation.contact_id = normalised, name, None
    outbox.record(session, "message_attribution_corrected", message.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "message_id": message.id,
        "rfc_message_id": message.rfc_message_id, "intake_id": message.intake_id,
        "previous": previous or None, "attributed_to": new, "corrected_by": by})
    return {"message_id": message.id, "attributed_to": new, "previous": previous or None, "changed": True}
