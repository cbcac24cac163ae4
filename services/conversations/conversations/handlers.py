"""Use cases of the conversations service (the write side). Each takes a SQLAlchemy session (the
unit of work) and the service's outbox; service.py calls it inside one transaction, so every
state change and the events describing it commit together. The rules are in domain/; what a
caller may do is checked here (404 / 403 through the shared HTTP errors)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Text, bindparam, case, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from conversations.domain import access, delivery, inboxes
from conversations.domain.comments import mentioned_handles
from conversations.domain.conversation import CLOSED, OPEN, new_reply_token
from conversations.domain.inboxes import InvalidInbox
from conversations.domain.participants import Participants, message_identities, participation
from conversations.domain.placement import AwaitingConversation, Copy, Placement, adopt, is_copy, place, untagged
from conversations.domain.quarantine import is_placeholder, placeholder_message
from conversations.domain.threads import (
    MAX_AWAITED_IDS,
    ConversationRef,
    Incoming,
    StoredMessageRef,
    ThreadMatch,
    awaited_ids,
    clean_message_id,
    find_threads,
    lookup_ids,
)
from conversations.models import (
    AwaitedParent,
    Channel,
    Comment,
    Conversation,
    ConversationInbox,
    ConversationMove,
    Inbox,
    InboxTeam,
    KnownContact,
    KnownUser,
    Member,
    Message,
    Ticket,
)
from conversations.queries import conversation_inboxes
from conversations.settings import Settings
from mailroom_shared.addresses import try_normalise_email
from mailroom_shared.auth import Principal
from mailroom_shared.db import aware, conflict_insert, is_postgres, parse_time, utcnow
from mailroom_shared.http import Conflict, Forbidden, HttpError, NotFound, get_or_404
from mailroom_shared.messaging.nameko_adapters import PoisonMessage
from mailroom_shared.messaging.outbox import Outbox
from mailroom_shared.text import snippet

SEED_LOCK_KEY = 0x6D61696C  # pg advisory lock: replicas starting together seed one at a time
MAX_SUCCESSOR_HOPS = 50
UNSET = object()


class UnknownChannel(Exception):
    """No inbox has this address (yet): an ordinary error, so the message is retried with
    backoff — the inbox_updated that makes ingest accept it may be ahead of our own state."""


class InboxConflict(Exception):
    """Another inbox has the key or a channel address (HTTP 409; a bad inboxes file stops the start)."""


class OutboundMessageNotYetStored(Exception):
    """A delivery state arrived before email_queued was stored: retried with backoff."""


# --- who may act -------------------------------------------------------------------------------

def require_manage(principal: Principal) -> None:
    if not access.can_manage(principal):
        raise Forbidden(access.MANAGE_REFUSAL)


def require_act(principal: Principal, inbox: Inbox | None, not_found: str, action: str) -> Inbox:
    """The inbox if the principal may `action` in it: 404 with `not_found` when it may not even
    view it (the answer for something that does not exist), 403 when it may only view it."""
    if inbox is None or not access.can_view(principal, inbox.access):
        raise NotFound(not_found)
    if not access.can_act(principal, inbox.access):
        raise Forbidden(access.act_refusal(inbox.name, action), {"inbox_id": inbox.id, "action": action})
    return inbox


def _conversation_to_act_on(session: Session, principal: Principal, conversation_id: str,
                            action: str) -> tuple[Conversation, Inbox]:
    """The conversation, locked for the change, and the first of its inboxes (home first, then
    those it is shared into) where the principal may `action`: 404 when it may view none of them,
    403 when it may only view."""
    conversation = session.get(Conversation, conversation_id, with_for_update=True)
    inboxes = conversation_inboxes(session, conversation) if conversation is not None else []
    acting = access.first_actable(principal, [i.access for i in inboxes])
    if acting is not None:
        return conversation, inboxes[acting]
    viewable = access.first_viewable(principal, [i.access for i in inboxes])
    require_act(principal, inboxes[viewable] if viewable is not None else None,
                f"no conversation {conversation_id}", action)
    raise AssertionError("unreachable: require_act refuses a viewer who may not act")


# --- inboxes -----------------------------------------------------------------------------------

def inbox_payload(inbox: Inbox) -> dict:
    """The inbox_updated data (ingest: RCPT addresses to accept; contacts: trusted forwarders)."""
    primary = next((c.address for c in inbox.channels if c.is_primary), None)
    return {
        "inbox_id": inbox.id, "name": inbox.name, "primary_address": primary,
        "channel_addresses": sorted(c.address for c in inbox.channels),
        "member_emails": sorted({m.email for m in inbox.members}),
        "visibility": inbox.visibility or access.EVERYONE,
        "member_user_ids": sorted({m.user_id for m in inbox.members}),
        "team_ids": sorted({t.team_id for t in inbox.teams}),
    }


def announce(session: Session, outbox: Outbox, inbox: Inbox, *, only_if_changed: bool) -> bool:
    """Record inbox_updated; with `only_if_changed`, only when it differs from the last one."""
    payload = inbox_payload(inbox)
    digest = inboxes.inbox_digest(payload)
    if only_if_changed and digest == inbox.announced_digest:
        return False
    outbox.record(session, "inbox_updated", inbox.id, payload)
    inbox.announced_digest = digest
    return True


def _set_channels(session: Session, inbox: Inbox, channels: list[dict]) -> None:
    wanted = inboxes.normalised_channels(channels)
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
    for item in inboxes.normalised_members(members):
        member = current.get(item["user_id"]) or Member(user_id=item["user_id"])
        member.email = item["email"]
        keep.append(member)
    inbox.members = keep


def _set_access(inbox: Inbox, body: dict) -> None:
    wanted = body.get("access")
    if wanted is None:
        return
    if wanted.get("visibility") is not None:
        inbox.visibility = inboxes.checked_visibility(wanted["visibility"])
    if wanted.get("teams") is not None:
        current = {t.team_id: t for t in inbox.teams}
        inbox.teams = [current.get(team) or InboxTeam(team_id=team) for team in dict.fromkeys(wanted["teams"])]


@contextlib.contextmanager
def _inbox_errors() -> Iterator[None]:
    """An inbox that can never be stored as written: 400; an address or key taken (also by a
    concurrent writer, caught by the unique keys): 409."""
    try:
        yield
    except InvalidInbox as exc:
        raise HttpError(str(exc)) from exc
    except (InboxConflict, IntegrityError) as exc:
        raise Conflict(str(exc).splitlines()[0]) from exc


def create_inbox(session: Session, outbox: Outbox, body: dict) -> Inbox:
    with _inbox_errors():
        if body.get("key") and session.execute(select(Inbox.id).where(Inbox.key == body["key"])).first():
            raise InboxConflict(f"an inbox with key {body['key']!r} exists")
        now = utcnow()
        inbox = Inbox(id=str(uuid.uuid4()), key=body.get("key"), name=body["name"], created_at=now, updated_at=now)
        session.add(inbox)
        _set_channels(session, inbox, body["channels"])
        _set_members(inbox, body.get("members") or [])
        inbox.visibility = access.EVERYONE
        _set_access(inbox, body)
        session.flush()
        announce(session, outbox, inbox, only_if_changed=False)
        session.flush()
    return inbox


def update_inbox(session: Session, outbox: Outbox, inbox_id: str, body: dict) -> Inbox:
    """Replace the given fields; always re-announces (an operator can re-sync ingest/contacts)."""
    inbox = get_or_404(session, Inbox, inbox_id, "inbox")
    with _inbox_errors():
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
        session.flush()
    return inbox


def seed_inboxes(session: Session, outbox: Outbox, entries: list[dict] | tuple[dict, ...]) -> list[tuple[Inbox, bool]]:
    """Upsert the configured inboxes (by key, default: the name slugified). inbox_updated is
    recorded when what other services need changed — so on a fresh database, once; on a
    restart with the same file, never. Inboxes no longer in the file are left alone."""
    if is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEED_LOCK_KEY})
    results = []
    for entry in entries:
        key = entry.get("key") or inboxes.inbox_key(entry["name"])
        inbox = session.execute(select(Inbox).where(Inbox.key == key)).scalar_one_or_none()
        if inbox is None:
            now = utcnow()
            inbox = Inbox(id=str(uuid.uuid4()), key=key, name=entry["name"], created_at=now, updated_at=now)
            session.add(inbox)
        before = inboxes.inbox_digest(inbox_payload(inbox)) if inbox.channels else None
        inbox.name = entry["name"]
        _set_channels(session, inbox, entry["channels"])
        _set_members(inbox, entry.get("members") or [])
        if inbox.visibility is None:
            inbox.visibility = access.EVERYONE
        _set_access(inbox, entry)
        session.flush()
        if inboxes.inbox_digest(inbox_payload(inbox)) != before:
            inbox.updated_at = utcnow()
        results.append((inbox, announce(session, outbox, inbox, only_if_changed=True)))
    return results


# --- messages, inbound and ours ----------------------------------------------------------------

def _address(value: dict | None) -> dict | None:
    if not value:
        return None
    return {"name": value.get("name"), "email": value.get("email")}


def _message_row(data: dict, **fields) -> dict:
    """A message row's values: what inbound and outbound messages share, from their event's data."""
    return dict(
        subject=data.get("subject") or "", to=[_address(a) for a in data.get("to") or []],
        cc=[_address(a) for a in data.get("cc") or []], reply_to=[_address(a) for a in data.get("reply_to") or []],
        in_reply_to=list(data.get("in_reply_to") or []), references=list(data.get("references") or []),
        text=data.get("text"), html=data.get("html"), snippet=snippet(data.get("text"), data.get("html")),
        attachments=[dict(a) for a in data.get("attachments") or []], created_at=utcnow(), **fields)


# A stored message's row and its conversation's counters are written in Core statements built once
# (issue #16): the ORM's unit of work (flush, identity map, per-attribute history) cost more of the
# inbound handler's CPU than the statements themselves. The objects handed back (Received) are
# plain copies of what was written (Written), for the caller to read: not ORM objects, whose
# instrumented constructor cost as much as the INSERT's own Python.
_MESSAGES, _CONVERSATIONS = Message.__table__, Conversation.__table__
_INSERT_MESSAGE = insert(_MESSAGES)
# a new conversation's contact, when contacts announced the address already: in the INSERT itself
_INSERT_CONVERSATION = (
    insert(_CONVERSATIONS)
    .values(contact_id=select(KnownContact.contact_id).where(KnownContact.email == bindparam("known_email"))
            .scalar_subquery())
    .returning(_CONVERSATIONS.c.contact_id))
_AT = bindparam("at", type_=_CONVERSATIONS.c.last_message_at.type)
_LATEST = or_(_CONVERSATIONS.c.message_count == 0, _CONVERSATIONS.c.last_message_at <= _AT)
# one more message: the counters, and the snippet when it is the latest; the UPDATE locks the row,
# so concurrent messages of one conversation count in turn
_COUNT_MESSAGE = (
    update(_CONVERSATIONS).where(_CONVERSATIONS.c.id == bindparam("the_conversation"))
    .values(message_count=_CONVERSATIONS.c.message_count + 1,
            last_message_at=case((_LATEST, _AT), else_=_CONVERSATIONS.c.last_message_at),
            snippet=case((_LATEST, bindparam("the_snippet", type_=Text())), else_=_CONVERSATIONS.c.snippet))
    .returning(*_CONVERSATIONS.c))
_COUNT_MESSAGE_AND_REOPEN = _COUNT_MESSAGE.values(status=OPEN, closed_at=None)


class Written(types.SimpleNamespace):
    """A row as a Core statement wrote it (a message, a conversation), read by attribute like
    the ORM's objects, every column present (None where the INSERT left it to the database's
    NULL); it is not in the session."""


_CONVERSATION_COLUMNS = dict.fromkeys(_CONVERSATIONS.c.keys())
_MESSAGE_COLUMNS = dict.fromkeys(_MESSAGES.c.keys())


def _forget_loaded(session: Session, model: type[Conversation] | type[Message], row_id: str) -> None:
    """A Core UPDATE leaves a row this session loaded earlier (another message of the same batch,
    a thread lookup) with the old values: expired, it is read again when next used. (The
    UPDATE's autoflush has written any change of it before.)"""
    loaded = session.identity_map.get(session.identity_key(model, row_id))
    if loaded is not None:
        session.expire(loaded)


def _count_message(session: Session, conversation_id: str, message: dict, *, reopen: bool = False
                   ) -> Written | None:
    """One more message in an existing conversation; None: there is no such conversation."""
    row = session.execute(_COUNT_MESSAGE_AND_REOPEN if reopen else _COUNT_MESSAGE, {
        "the_conversation": conversation_id, "at": message["received_at"], "the_snippet": message["snippet"],
    }).one_or_none()
    if row is None:
        return None
    _forget_loaded(session, Conversation, conversation_id)
    return Written(**row._mapping)


def _insert_conversation(session: Session, inbox_id: str, subject: str | None, contact: dict, message: dict,
                         **fields) -> Written:
    """A new conversation, with `message` (stored next, by _insert_message) as its first."""
    contact_email = try_normalise_email(contact.get("email"))
    values = dict(
        inbox_id=inbox_id, subject=subject or "(no subject)", status=OPEN, contact_email=contact_email,
        contact_name=(contact.get("name") or "").strip() or None, message_count=1, snippet=message["snippet"],
        last_message_at=message["received_at"], created_at=utcnow(), closed_at=None, channel_type="email",
        **fields)
    values["contact_id"] = session.execute(_INSERT_CONVERSATION, {**values, "known_email": contact_email}).scalar()
    return Written(**{**_CONVERSATION_COLUMNS, **values})


def _insert_message(session: Session, message: dict) -> Written:
    """The unique (inbox_id, rfc_message_id) decides a race: the loser's IntegrityError rolls its
    transaction back and the message is retried (it is then a duplicate)."""
    session.execute(_INSERT_MESSAGE, message)
    return Written(**{**_MESSAGE_COLUMNS, **message})


def _message_added(conversation: Conversation | Written, message: Message | Written,
                   intake_id: str | None) -> tuple[str, str, dict]:
    return "message_added", conversation.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "message_id": message.id,
        "rfc_message_id": message.rfc_message_id, "direction": message.direction, "sender": message.sender,
        "attributed_to": message.attributed_to, "subject": message.subject, "intake_id": intake_id,
        "spam": conversation.spam,
    }


def _conversation_created(conversation: Conversation | Written) -> tuple[str, str, dict]:
    return "conversation_created", conversation.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "subject": conversation.subject,
        "contact_email": conversation.contact_email, "contact_name": conversation.contact_name,
        "status": conversation.status, "spam": conversation.spam, "reopened_from": conversation.reopened_from,
        "related_conversation_id": conversation.related_conversation_id,
    }


# --- inbound messages --------------------------------------------------------------------------

MAX_CANDIDATE_CONVERSATIONS = 5  # conversations a message refers to whose participants are read
MAX_COPY_CANDIDATES = 5  # stored messages with the same Message-ID looked at (one email to several inboxes)

# The statements every inbound message runs, built once: building a select (its columns, joins and
# comparisons) cost more of the handler's CPU than executing it from SQLAlchemy's compiled cache.
# Lookups that only need a conversation's reference (_ref) select table columns: an ORM entity
# costs the ORM's loading and identity map for each row, and a select of mapped attributes its
# compile step, for values read once.
_C, _M = _CONVERSATIONS.c, _MESSAGES.c
_REF_COLUMNS = (_C.id, _C.inbox_id, _C.status, _C.spam, _C.reply_token)
_CHANNEL_INBOX = select(Channel.__table__.c.inbox_id).where(Channel.__table__.c.address == bindparam("address"))
# a Message-ID stored already (a redelivery, or a copy for another inbox): almost never, so only
# then are the messages and conversations loaded (_STORED_WITH_MESSAGE_ID)
_MESSAGE_ID_STORED = select(_M.id).where(_M.rfc_message_id == bindparam("rfc_message_id")).limit(1)
_STORED_WITH_MESSAGE_ID = (
    select(Message, Conversation).join(Conversation, Conversation.id == Message.conversation_id)
    .where(Message.rfc_message_id == bindparam("rfc_message_id"))
    .order_by(Message.inbox_id != bindparam("inbox_id"), Message.received_at, Message.id)
    .limit(MAX_COPY_CANDIDATES + 1))
_AWAITING = (
    select(*_REF_COLUMNS, _M.sender, _M.attributed_to)
    .join(_MESSAGES, _M.conversation_id == _C.id)
    .join(AwaitedParent.__table__, AwaitedParent.__table__.c.message_id == _M.id)
    .where(AwaitedParent.__table__.c.rfc_message_id == bindparam("rfc_message_id"),
           _M.inbox_id == bindparam("inbox_id"))
    .order_by(_C.created_at, _C.id))
_BY_TOKEN = select(*_REF_COLUMNS).where(_C.reply_token == bindparam("token"), _C.inbox_id == bindparam("inbox_id"))
_BY_MESSAGE_ID = (
    select(_M.rfc_message_id.label("rfc_id"), _M.inbox_id.label("message_inbox_id"), *_REF_COLUMNS)
    .join(_CONVERSATIONS, _C.id == _M.conversation_id)
    .where(_M.inbox_id == bindparam("inbox_id"), _M.rfc_message_id.in_(bindparam("ids", expanding=True))))
_SHARED_BY_MESSAGE_ID = (
    select(_M.rfc_message_id.label("rfc_id"), *_REF_COLUMNS)
    .join(_CONVERSATIONS, _C.id == _M.conversation_id)
    .join(ConversationInbox.__table__, ConversationInbox.__table__.c.conversation_id == _C.id)
    .where(ConversationInbox.__table__.c.inbox_id == bindparam("inbox_id"),
           _M.rfc_message_id.in_(bindparam("ids", expanding=True))))
_MOVED_FROM = select(ConversationMove.__table__.c.conversation_id).where(
    ConversationMove.__table__.c.from_inbox_id == bindparam("inbox_id"))
_MOVED_BY_TOKEN = select(*_REF_COLUMNS).where(_C.reply_token == bindparam("token"), _C.id.in_(_MOVED_FROM))
_MOVED_BY_MESSAGE_ID = (
    select(*_REF_COLUMNS).join(_MESSAGES, _M.conversation_id == _C.id)
    .where(_M.rfc_message_id == bindparam("rfc_message_id"), _C.id.in_(_MOVED_FROM)).limit(1))


@dataclass(frozen=True)
class Received:
    message: Message | Written  # Written: stored now; Message, Conversation: stored before
    conversation: Conversation | Written
    placement: Placement | None  # None: a duplicate, nothing changed


def _ref(conversation) -> ConversationRef:
    """Of a Conversation, or of a row with _REF_COLUMNS."""
    return ConversationRef(conversation.id, conversation.inbox_id, conversation.status, conversation.spam,
                           conversation.reply_token)


def _email(value: dict | None) -> str | None:
    return try_normalise_email((value or {}).get("email"))


def _stored_email(value: dict | None) -> str | None:
    """A stored address, compared as normalise_email writes it: lower-cased (the full parser only
    for internationalised domains, whose stored form may be the ACE one)."""
    email = ((value or {}).get("email") or "").strip().strip("<>")
    if "xn--" in email.lower():
        return try_normalise_email(email)
    return email.lower() or None


def _incoming(inbox_id: str, data: dict) -> Incoming:
    flags = data.get("flags") or {}
    return Incoming(
        inbox_id=inbox_id, rfc_message_id=clean_message_id(data["message_id"]),
        subject=data.get("subject") or "", reply_token=data.get("reply_token"),
        in_reply_to=tuple(data.get("in_reply_to") or ()), references=tuple(data.get("references") or ()),
        spam=bool(flags.get("spam")),
        automatic=bool(flags.get("auto_submitted") or flags.get("bounce") or flags.get("loop")),
        sender=_email(data.get("sender")), attributed_to=_email(data.get("attributed_to")),
    )


def _lock_key(inbox_id: str, rfc_message_id: str) -> int:
    digest = hashlib.blake2b(f"{inbox_id}\n{rfc_message_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _copy_lock_key(incoming: Incoming) -> int:
    """Keyed by Message-ID and sender, not by inbox: the copies of one email for two inboxes."""
    return _lock_key(f"copy\n{incoming.sender}", incoming.rfc_message_id)


# contacts_merged and the messages take turns on this (contact_corrections.settle_contacts): a
# message takes it shared, first of its locks (a merge holds it exclusively while it moves rows)
CONTACT_MERGE_LOCK = int.from_bytes(hashlib.blake2b(b"conversations.contact-merge", digest_size=8).digest(), "big",
                                    signed=True)
# the message's shared turn with contact merges first (it is then held before any row lock: a merge
# waiting for a row this transaction locked cannot be what this transaction waits for), then its
# own locks in ascending order; one statement
_SERIALISE = text(
    "SELECT CASE WHEN turn THEN pg_advisory_xact_lock_shared(k) ELSE pg_advisory_xact_lock(k) END "
    "FROM (SELECT true AS turn, CAST(:merge_turn AS bigint) AS k "
    "      UNION ALL SELECT false, unnest(CAST(:keys AS bigint[])) ORDER BY 1 DESC, 2) AS ordered")


def _serialise_with_relatives(session: Session, incoming: Incoming) -> None:
    """PostgreSQL: a message and the messages it refers to (or that refer to it) are threaded one
    after the other, never side by side. Each takes a transaction-scoped advisory lock on its own
    Message-ID and on the ids it refers to (in one order: no deadlock between two messages), so a
    reply and its parent handled at the same moment by two consumers cannot both miss the other:
    the second waits for the first to commit, then finds it (joins it, or adopts it). SQLite
    writes one transaction at a time anyway. The same statement takes the message's shared turn
    with contact merges (CONTACT_MERGE_LOCK), which contact_corrections.settle_contacts needs."""
    if not is_postgres(session):
        return
    keys = {_lock_key(incoming.inbox_id, key) for key in
            (incoming.rfc_message_id, *lookup_ids(incoming)[:MAX_AWAITED_IDS])}
    if incoming.sender:  # copies of one email for other inboxes take turns too (_shared_copy)
        keys.add(_copy_lock_key(incoming))
    session.execute(_SERIALISE, {"merge_turn": CONTACT_MERGE_LOCK, "keys": sorted(keys)})


def _find_threads(session: Session, incoming: Incoming) -> tuple[list[ThreadMatch], set[str]]:
    """The conversations `incoming` refers to (domain/threads.find_threads) and the ids it refers
    to that are stored in the inbox."""
    by_token: dict[str, ConversationRef] = {}
    token = (incoming.reply_token or "").strip().lower()
    if token:
        for conversation in session.execute(_BY_TOKEN, {"token": token, "inbox_id": incoming.inbox_id}):
            by_token[token] = _ref(conversation)
    by_message_id: dict[str, StoredMessageRef] = {}
    ids = lookup_ids(incoming)
    if ids:
        params = {"inbox_id": incoming.inbox_id, "ids": list(ids)}
        for row in session.execute(_BY_MESSAGE_ID, params):
            by_message_id[row.rfc_id] = StoredMessageRef(row.message_inbox_id, row.rfc_id, _ref(row))
        # a conversation shared into this inbox (one email to several inboxes) is in it too: a
        # reply that reached only this inbox threads there as it would in the home inbox
        for row in session.execute(_SHARED_BY_MESSAGE_ID, params):
            stored = by_message_id.get(row.rfc_id)
            if stored is None or stored.conversation.inbox_id != incoming.inbox_id:
                by_message_id[row.rfc_id] = StoredMessageRef(incoming.inbox_id, row.rfc_id, dataclasses.replace(
                    _ref(row), inbox_id=incoming.inbox_id))
    return find_threads(incoming, by_token, by_message_id), set(by_message_id)


def _find_moved_thread(session: Session, incoming: Incoming) -> ThreadMatch | None:
    """A reply that reached the old inbox of a conversation moved away from it (by reply token,
    In-Reply-To or References, as in the inbox itself): it follows the conversation."""
    token = (incoming.reply_token or "").strip().lower()
    if token:
        conversation = session.execute(_MOVED_BY_TOKEN, {"token": token, "inbox_id": incoming.inbox_id}).first()
        if conversation is not None:
            return ThreadMatch(_ref(conversation), "reply_token", token)
    for key in lookup_ids(incoming):
        conversation = session.execute(_MOVED_BY_MESSAGE_ID, {"rfc_message_id": key,
                                                              "inbox_id": incoming.inbox_id}).first()
        if conversation is not None:
            field = "in_reply_to" if key in {clean_message_id(i) for i in incoming.in_reply_to} else "references"
            return ThreadMatch(_ref(conversation), field, key)
    return None


def _follow_successors(session: Session, match: ThreadMatch) -> ThreadMatch:
    """A reply to a closed conversation that already continued in a linked one goes there."""
    current = match.conversation
    for _ in range(MAX_SUCCESSOR_HOPS):
        if current.status != CLOSED:
            break
        successor = session.execute(
            select(Conversation).where(Conversation.reopened_from == current.id,
                                       Conversation.spam == current.spam)
            .order_by(Conversation.created_at.desc()).limit(1)).scalar_one_or_none()
        if successor is None:
            break
        current = _ref(successor)
    return match if current is match.conversation else ThreadMatch(current, match.matched_by, match.key)


# --- who takes part in a conversation (the lookups; the rule is domain/participants.py) -------

def _contact_addresses(session: Session, email: str | None, contact_id: str | None) -> frozenset[str]:
    """Every address we know of the contact: its conversation's contact address and, once
    contacts announced it (contact_created), the contact's other addresses."""
    addresses = {email} if email else set()
    if contact_id is None and email:
        known = session.get(KnownContact, email)
        contact_id = known.contact_id if known else None
    if contact_id:
        addresses.update(session.execute(select(KnownContact.email).where(
            KnownContact.contact_id == contact_id)).scalars())
    return frozenset(a.lower() for a in addresses if a)


def _conversation_addresses(session: Session, conversation_id: str) -> frozenset[str]:
    """From (and the attributed sender), To and Cc of every message of the conversation, ours too."""
    found: set[str] = set()
    for sender, attributed, to, cc in session.execute(
            select(Message.sender, Message.attributed_to, Message.to, Message.cc)
            .where(Message.conversation_id == conversation_id)):
        for value in (sender, attributed, *(to or ()), *(cc or ())):
            email = _stored_email(value)
            if email:
                found.add(email)
    return frozenset(found)


def _member_addresses(session: Session, inbox_id: str, identities: frozenset[str]) -> frozenset[str]:
    """The inbox's members' addresses among `identities`: explicit members, and users seen with a
    valid token whom the inbox's access includes (everyone, or one of its teams)."""
    wanted = {i.lower() for i in identities}
    if not wanted:
        return frozenset()
    found = {e.lower() for e in session.execute(select(Member.email).where(Member.inbox_id == inbox_id)).scalars()
             if e and e.lower() in wanted}
    rest = wanted - found
    if rest:
        known_users = session.execute(select(KnownUser).where(func.lower(KnownUser.email).in_(sorted(rest)))).scalars()
        known_users = list(known_users)
        if known_users:
            rules = session.get(Inbox, inbox_id).access
            found.update(k.email.lower() for k in known_users if access.includes(rules, k.user_id, k.team_ids or []))
    return frozenset(found)


def _why_participant(session: Session, conversation_id: str, identities: frozenset[str]) -> str | None:
    """Whether (and why) one of `identities` takes part in the conversation; the cheap lookups first."""
    if not identities:
        return None
    conversation = session.get(Conversation, conversation_id)
    participants = Participants(contact_addresses=_contact_addresses(
        session, conversation.contact_email, conversation.contact_id))
    why = participation(identities, participants)
    if why is None:
        participants = dataclasses.replace(participants,
                                           addresses=_conversation_addresses(session, conversation_id))
        why = participation(identities, participants)
    if why is None:
        participants = dataclasses.replace(participants, member_addresses=_member_addresses(
            session, conversation.inbox_id, identities))
        why = participation(identities, participants)
    return why


def _joinable(session: Session, incoming: Incoming, matches: list[ThreadMatch]) -> tuple[ThreadMatch | None, bool]:
    """The first conversation `incoming` refers to whose participants include its sender (and
    True); else the first it refers to (and False: it starts a conversation linked to that one)."""
    for match in matches[:MAX_CANDIDATE_CONVERSATIONS]:
        if _why_participant(session, match.conversation.id, incoming.identities) is not None:
            return match, True
    return (matches[0], False) if matches else (None, True)


def _own_participants(session: Session, incoming: Incoming, data: dict,
                      starters: frozenset[str]) -> Participants:
    """The participants a conversation started by this message would have (for adoption:
    `starters` are the identities that must count among them, for the member lookup)."""
    addresses = {a for a in (_email(v) for v in [data.get("sender"), data.get("attributed_to"),
                                                  *(data.get("to") or ()), *(data.get("cc") or ())]) if a}
    return Participants(
        addresses=frozenset(addresses),
        contact_addresses=_contact_addresses(session, incoming.attributed_to or incoming.sender, None),
        member_addresses=_member_addresses(session, incoming.inbox_id, starters))


def _awaiting(session: Session, incoming: Incoming) -> list[AwaitingConversation]:
    """The conversations of the inbox whose first message referred to this message's id, oldest first."""
    rows = session.execute(_AWAITING, {"rfc_message_id": incoming.rfc_message_id,
                                       "inbox_id": incoming.inbox_id}).all()
    awaiting, seen = [], set()
    for row in rows:
        if row.id not in seen:
            seen.add(row.id)
            awaiting.append(AwaitingConversation(_ref(row), message_identities(
                _stored_email(row.sender), _stored_email(row.attributed_to))))
    return awaiting


def _place_late_parent(session: Session, incoming: Incoming, data: dict, placement: Placement) -> Placement:
    """A message about to start a conversation may be the late parent of one that exists
    (domain/placement.adopt); if it may not join it, its new conversation is linked to it."""
    awaiting = _awaiting(session, incoming)
    if not awaiting:
        return placement
    starters = frozenset().union(*(a.starter_identities for a in awaiting))
    adopted = adopt(incoming, awaiting, _own_participants(session, incoming, data, starters))
    if adopted is not None:
        return adopted
    if placement.related_conversation_id is None and placement.reopened_from is None:
        return dataclasses.replace(placement, related_conversation_id=awaiting[0].conversation.id,
                                   reason="not a participant of the conversation that refers to it")
    return placement


def _stored_with_message_id(session: Session, incoming: Incoming) -> list[tuple[Message, Conversation]]:
    """The stored messages with `incoming`'s Message-ID, with their conversations: this inbox's
    first (a duplicate), then the copies in other inboxes, oldest first — one statement for what
    the duplicate check and the copy check (_shared_copy) both need; nothing, for almost every
    message. At most one per inbox (the unique (inbox_id, rfc_message_id))."""
    if session.execute(_MESSAGE_ID_STORED, {"rfc_message_id": incoming.rfc_message_id}).first() is None:
        return []
    return session.execute(_STORED_WITH_MESSAGE_ID, {"rfc_message_id": incoming.rfc_message_id,
                                                     "inbox_id": incoming.inbox_id}).tuples().all()


def _duplicate_among(incoming: Incoming, stored: list[tuple[Message, Conversation]]) -> Received | None:
    if stored and stored[0][0].inbox_id == incoming.inbox_id:
        return Received(stored[0][0], stored[0][1], None)
    return None


def _duplicate(session: Session, incoming: Incoming) -> Received | None:
    duplicate = session.execute(select(Message).where(
        Message.inbox_id == incoming.inbox_id, Message.rfc_message_id == incoming.rfc_message_id)
    ).scalar_one_or_none()
    if duplicate is None:
        return None
    return Received(duplicate, session.get(Conversation, duplicate.conversation_id), None)


# --- one email to several team inboxes (docs/architecture.md) ------------------------------------


def _untagged_set(addresses) -> frozenset[str]:
    return frozenset(a for a in (untagged(_stored_email(v)) for v in addresses) if a)


def _inbox_addresses(session: Session, inbox_id: str, *extra: str | None) -> frozenset[str]:
    rows = session.execute(select(Channel.address).where(Channel.inbox_id == inbox_id)).scalars()
    return frozenset(a for a in (untagged(x) for x in (*rows, *extra)) if a)


def _copy_of_stored(session: Session, message: Message, conversation: Conversation) -> Copy:
    return Copy(rfc_message_id=message.rfc_message_id, sender=_stored_email(message.sender),
                subject=message.subject or "", text=message.text or "",
                recipients=_untagged_set([*(message.to or ()), *(message.cc or ())]),
                inbox_addresses=_inbox_addresses(session, message.inbox_id, message.channel_address),
                received_at=aware(message.received_at), spam=conversation.spam)


def _copy_of_incoming(session: Session, incoming: Incoming, data: dict) -> Copy:
    return Copy(rfc_message_id=incoming.rfc_message_id, sender=incoming.sender, subject=data.get("subject") or "",
                text=data.get("text") or "",
                recipients=_untagged_set([*(data.get("to") or ()), *(data.get("cc") or ())]),
                inbox_addresses=_inbox_addresses(session, incoming.inbox_id, try_normalise_email(
                    data.get("channel_address"))),
                received_at=parse_time(data.get("received_at")), spam=incoming.spam)


def _shared_copy(session: Session, outbox: Outbox, incoming: Incoming, data: dict,
                 stored: list[tuple[Message, Conversation]]) -> Received | None:
    """The same email already stored for another of our inboxes (domain/placement.is_copy): this
    inbox is added to that conversation's inboxes (conversation_shared) and nothing is stored;
    for an inbox that already holds the conversation (a redelivery, or our own reply copied to a
    shared inbox coming back), nothing changes. None: not a copy, thread it as usual. `stored`:
    the messages with its Message-ID (_stored_with_message_id), none of them in this inbox."""
    if not incoming.sender:
        return None
    rows = [(message, conversation) for message, conversation in stored
            if message.inbox_id != incoming.inbox_id][:MAX_COPY_CANDIDATES]
    if not rows:
        return None
    mine = None
    for message, conversation in rows:
        inboxes = [conversation.inbox_id, *session.execute(select(ConversationInbox.inbox_id).where(
            ConversationInbox.conversation_id == conversation.id)).scalars()]
        if message.direction == "out":
            # our email (a reply-all that copied a shared inbox) came back to an inbox of its
            # conversation: the same email, stored once. Anywhere else it is threaded as usual.
            if incoming.inbox_id in inboxes and _stored_email(message.sender) == incoming.sender:
                return Received(message, conversation, None)
            continue
        mine = mine or _copy_of_incoming(session, incoming, data)
        if not is_copy(mine, _copy_of_stored(session, message, conversation)):
            continue
        if incoming.inbox_id in inboxes:
            return Received(message, conversation, None)
        return _share(session, outbox, incoming, data, message, conversation, inboxes)
    return None


def _share(session: Session, outbox: Outbox, incoming: Incoming, data: dict, message: Message,
           conversation: Conversation, inboxes: list[str]) -> Received:
    conversation = session.get(Conversation, conversation.id, with_for_update=True, populate_existing=True)
    session.add(ConversationInbox(conversation_id=conversation.id, inbox_id=incoming.inbox_id,
                                  intake_id=data.get("intake_id"), shared_at=utcnow()))
    session.flush()
    outbox.record(session, "conversation_shared", conversation.id, {
        "conversation_id": conversation.id, "inbox_id": incoming.inbox_id, "home_inbox_id": conversation.inbox_id,
        "inbox_ids": [*inboxes, incoming.inbox_id], "message_id": message.id,
        "rfc_message_id": message.rfc_message_id, "intake_id": data.get("intake_id"),
        "sender": _address(data.get("sender")), "subject": conversation.subject, "spam": conversation.spam})
    return Received(message, conversation, Placement("share", _ref(conversation),
                                                     reason="the same email reached another inbox"))


def _record_awaited(session: Session, message: Written, ids: list[str]) -> None:
    """The ids the first message of a conversation referred to that are not stored (one INSERT)."""
    if ids:
        session.execute(conflict_insert(session, AwaitedParent).values(
            [{"rfc_message_id": rfc_id, "message_id": message.id} for rfc_id in dict.fromkeys(ids)])
            .on_conflict_do_nothing())


def receive_message(session: Session, outbox: Outbox, data: dict, settings: Settings) -> Received:
    """Thread, store and announce one inbound message (message_received data): it joins (or
    reopens) the conversation it refers to when its sender is a participant, else it starts a new
    one linked to it; a parent processed after its reply joins the reply's conversation."""
    address = try_normalise_email(data["channel_address"])
    inbox_id = session.execute(_CHANNEL_INBOX, {"address": address}).scalar_one_or_none() if address else None
    if inbox_id is None:
        raise UnknownChannel(f"no inbox has the channel {data['channel_address']!r} (yet)")
    incoming = _incoming(inbox_id, data)
    if not incoming.rfc_message_id:
        raise ValueError("message_received without a Message-ID")  # ingest always generates one

    _serialise_with_relatives(session, incoming)
    stored = _stored_with_message_id(session, incoming)
    duplicate = _duplicate_among(incoming, stored)
    if duplicate is not None:
        if is_placeholder(duplicate.message.flags) and not is_placeholder(data.get("flags")):
            _fill_in_placeholder(duplicate.message, duplicate.conversation, data)
        return duplicate
    shared = _shared_copy(session, outbox, incoming, data, stored)
    if shared is not None:
        return shared
    matches, stored_ids = _find_threads(session, incoming)
    match, participant = _joinable(session, incoming, matches)
    if match is None:
        moved = _find_moved_thread(session, incoming)
        if moved is not None:
            match, participant = _joinable(session, incoming, [moved])
            if participant:  # stored in the inbox the conversation lives in now
                incoming = dataclasses.replace(incoming, inbox_id=moved.conversation.inbox_id)
                duplicate = _duplicate(session, incoming)
                if duplicate is not None:
                    return duplicate
    if match is not None and participant:
        match = _follow_successors(session, match)
    placement = place(incoming, match, settings.reply_to_closed, participant)
    if placement.action == "new":
        placement = _place_late_parent(session, incoming, data, placement)
    message_uuid = str(uuid.uuid4())
    row = _message_row(
        data, id=message_uuid, inbox_id=incoming.inbox_id, rfc_message_id=incoming.rfc_message_id, direction="in",
        intake_id=data.get("intake_id"), channel_address=address, via=data.get("via"),
        sender=_address(data.get("sender")), attributed_to=_address(data.get("attributed_to")),
        html_truncated=bool(data.get("html_truncated")),
        remote_images_blocked=int(data.get("remote_images_blocked") or 0), size=data.get("size"),
        full_message_url=data.get("raw_url"), forward=data.get("forward"), flags=_flags_of(data),
        date_header=data.get("date"), received_at=parse_time(data.get("received_at")))

    events: list[tuple[str, str, dict]] = []  # recorded together at the end: one INSERT
    if placement.action == "new":
        row["conversation_id"] = str(uuid.uuid4())
        conversation = _insert_conversation(
            session, incoming.inbox_id, incoming.subject, data.get("attributed_to") or {}, row,
            id=row["conversation_id"], spam=incoming.spam, reply_token=new_reply_token(),
            reopened_from=placement.reopened_from, related_conversation_id=placement.related_conversation_id)
    else:
        row["conversation_id"] = placement.conversation.id
        conversation = _count_message(session, placement.conversation.id, row,
                                      reopen=placement.action == "reopen")
        if conversation is None:  # threading read it in this transaction, and conversations are never deleted
            raise LookupError(f"conversation {placement.conversation.id} vanished while a message joined it")
        if placement.action == "reopen":
            events.append(("conversation_reopened", conversation.id, {
                "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "reason": "reply",
                "message_id": message_uuid}))
    message = _insert_message(session, row)
    if placement.action in ("new", "adopt"):  # the conversation's first message: its parent may come later
        _record_awaited(session, message, awaited_ids(incoming, stored_ids))
    if placement.action == "new":
        events.append(_conversation_created(conversation))
    events.append(_message_added(conversation, message, data.get("intake_id")))
    outbox.record_many(session, events)
    return Received(message, conversation, placement)


def receive_quarantined(session: Session, outbox: Outbox, data: dict, settings: Settings) -> Received:
    """A message ingest stored but could not process still reaches its inbox: threaded and
    announced like any other (what its headers said, read safely), marked not displayable with
    the reason and the link to the raw message. Spam rules still apply. When an operator re-runs
    it after an upgrade and it goes through, message_received fills this placeholder in."""
    return receive_message(session, outbox, placeholder_message(data), settings)


def _fill_in_placeholder(message: Message, conversation: Conversation, data: dict) -> None:
    """The full content of a message that was shown as a quarantined placeholder."""
    filled = _message_row(data)
    for column in ("subject", "to", "cc", "reply_to", "in_reply_to", "references", "text", "html", "snippet",
                   "attachments"):
        setattr(message, column, filled[column])
    message.sender, message.attributed_to = _address(data.get("sender")), _address(data.get("attributed_to"))
    message.forward, message.flags = data.get("forward"), dict(data.get("flags") or {})
    message.html_truncated = bool(data.get("html_truncated"))
    message.remote_images_blocked = int(data.get("remote_images_blocked") or 0)
    if conversation.message_count == 1:
        conversation.snippet = message.snippet


# --- our emails (outbound's delivery events) -----------------------------------------------------

def store_outbound_email(session: Session, outbox: Outbox, data: dict, state: str, details: dict
                         ) -> Written | None:
    """Our email in its conversation (and the Sent view): one row per email, whichever of
    email_queued / email_sent arrives first; a redelivery changes nothing. Stored with our
    Message-ID, so that the customer's answer threads back by In-Reply-To/References; the email
    of a compose creates its conversation. Returns what it stored; None: the email was stored
    already (the later event records only its delivery state)."""
    if _advance_delivery(session, data["email_id"], state, details):
        return None
    sender = _address(data.get("from_"))
    row = _message_row(
        data, id=data["email_id"], conversation_id=data["conversation_id"], inbox_id=None,
        rfc_message_id=clean_message_id(data["rfc_message_id"]), direction="out", intake_id=None,
        channel_address=try_normalise_email((sender or {}).get("email")), via="outbound", sender=sender,
        attributed_to=sender, html_truncated=False, remote_images_blocked=0, size=None,
        full_message_url=f"/api/outbound/emails/{data['email_id']}", forward=None,
        flags=delivery.with_state({"auto_submitted": bool(data.get("automatic")), "bounce": False, "spam": False,
                                   "loop": False, "reasons": []}, state, details),
        date_header=None, received_at=parse_time(data.get("queued_at")))
    conversation = _count_message(session, data["conversation_id"], row)
    if conversation is None:
        if not data.get("new_conversation"):
            raise PoisonMessage(f"no conversation {data['conversation_id']}")
        # only a new conversation needs the inbox looked up (a reply's is the conversation's, issue #16);
        # an existence check: not session.get(), which loads the inbox's channels, members and teams
        if session.execute(select(Inbox.id).where(Inbox.id == data["inbox_id"])).first() is None:
            raise PoisonMessage(f"no inbox {data['inbox_id']}")
        conversation = _insert_conversation(
            session, data["inbox_id"], data.get("subject"), (data.get("to") or [{}])[0], row,
            id=data["conversation_id"], spam=False,
            reply_token=(data.get("reply_token") or "").lower() or new_reply_token(),
            reopened_from=None, related_conversation_id=None)
        outbox.record(session, *_conversation_created(conversation))
    row["inbox_id"] = conversation.inbox_id
    message = _insert_message(session, row)
    outbox.record(session, *_message_added(conversation, message, None))
    return message


# a delivery state in two statements built once, not an entity loaded and flushed (issue #16):
# outbound's email_sent (and each deferral, failure and bounce) reads only the flags
_MESSAGE_FLAGS = select(_M.flags).where(_M.id == bindparam("email_id")).with_for_update()
_SET_MESSAGE_FLAGS = update(_MESSAGES).where(_M.id == bindparam("email_id")).values(
    flags=bindparam("new_flags", type_=_M.flags.type))


def _advance_delivery(session: Session, email_id: str, state: str, details: dict) -> bool:
    """`state` recorded on our stored email, when it is later than the recorded one (its row
    locked meanwhile: two delivery events of one email advance it in turn). False: the email is
    not stored."""
    row = session.execute(_MESSAGE_FLAGS, {"email_id": email_id}).first()
    if row is None:
        return False
    flags = delivery.advanced(row.flags, state, details)
    if flags is not None:
        session.execute(_SET_MESSAGE_FLAGS, {"email_id": email_id, "new_flags": flags})
        _forget_loaded(session, Message, email_id)
    return True


def record_delivery_state(session: Session, data: dict, state: str, details: dict) -> None:
    if not _advance_delivery(session, data["email_id"], state, details):
        raise OutboundMessageNotYetStored(f"email {data['email_id']} is not stored yet ({state} arrived first)")


def _flags_of(data: dict) -> dict:
    """ingest's flags, and where automatic replies may go (RFC 3834 Return-Path; outbound's
    auto-acknowledgement reads it through the reply context; not shown by the API)."""
    flags = dict(data.get("flags") or {})
    if data.get("return_path"):
        flags["return_path"] = data["return_path"]
    return flags


def record_recipient_bounces(session: Session, data: dict) -> Message:
    """The recipients a DSN returned our email for (outbound's `email_bounced.recipients`), listed
    on the message (`flags.bounced_recipients`, `bounced:<address>` reasons) beside its state."""
    message = session.get(Message, data["email_id"], with_for_update=True)
    if message is None:
        raise OutboundMessageNotYetStored(f"email {data['email_id']} is not stored yet (bounced arrived first)")
    flags = delivery.with_bounced_recipients(message.flags, data.get("recipients") or [])
    if flags is not None:
        message.flags = flags
    return message


# --- status ------------------------------------------------------------------------------------

def close_conversation(session: Session, outbox: Outbox, principal: Principal, conversation_id: str,
                       close_ticket: bool = False) -> Conversation:
    """Close the conversation and, with `close_ticket`, its associated ticket too."""
    conversation, _ = _conversation_to_act_on(session, principal, conversation_id, "close")
    if conversation.status == CLOSED:
        return conversation
    conversation.status, conversation.closed_at = CLOSED, utcnow()
    ticket = session.get(Ticket, conversation.ticket_id, with_for_update=True) if conversation.ticket_id else None
    ticket_closed = False
    if ticket is not None and close_ticket and ticket.status != CLOSED:
        ticket.status, ticket.closed_at = CLOSED, utcnow()
        ticket_closed = True
    outbox.record(session, "conversation_closed", conversation.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "reason": "api",
        "closed_by": principal.user_id, "ticket_id": conversation.ticket_id, "ticket_closed": ticket_closed})
    if ticket_closed:
        outbox.record(session, "ticket_closed", ticket.id, {
            "ticket_id": ticket.id, "conversation_id": conversation.id, "closed_by": principal.user_id})
    return conversation


def reopen_conversation(session: Session, outbox: Outbox, principal: Principal, conversation_id: str) -> Conversation:
    """Reopen the conversation (its ticket keeps its own status)."""
    conversation, _ = _conversation_to_act_on(session, principal, conversation_id, "reopen")
    if conversation.status == OPEN:
        return conversation
    conversation.status, conversation.closed_at = OPEN, None
    outbox.record(session, "conversation_reopened", conversation.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "reason": "api",
        "message_id": None})
    return conversation


# --- users, assignment, comments -----------------------------------------------------------------

def remember_user(session: Session, principal: Principal) -> None:
    """Keep the directory of users as their tokens describe them (assignees, @mentions). The
    first requests of a new user may come at once: the first insert wins, the others change nothing."""
    teams = sorted(principal.team_ids)
    known = session.get(KnownUser, principal.user_id)
    if known is None:
        session.execute(conflict_insert(session, KnownUser).values(
            user_id=principal.user_id, email=principal.email, team_ids=teams, updated_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=[KnownUser.user_id]))
    elif known.email != principal.email or list(known.team_ids or []) != teams:
        known.email, known.team_ids, known.updated_at = principal.email, teams, utcnow()


def user_is_member(session: Session, inbox: Inbox, user_id: str) -> bool:
    """An explicit member, or a known user (seen with a valid token) whom the inbox's access
    includes: everyone, or one of its teams."""
    rules = inbox.access
    if user_id in rules.member_user_ids:
        return True
    known = session.get(KnownUser, user_id)
    return known is not None and access.includes(rules, user_id, known.team_ids or [])


def _member_of_any(session: Session, inboxes: list[Inbox], user_id: str) -> bool:
    """A member of one of a (shared) conversation's inboxes."""
    return any(user_is_member(session, inbox, user_id) for inbox in inboxes)


def _inbox_names(inboxes: list[Inbox]) -> str:
    return " or ".join(repr(inbox.name) for inbox in inboxes)


def assign(session: Session, outbox: Outbox, principal: Principal, conversation_id: str, assignee: str | None,
           expected=UNSET) -> Conversation:
    """Assign (reassign, or unassign with None). `expected` (the assignee the caller saw) makes it
    a compare-and-set: of several concurrent assignments of one conversation, one wins (the row
    is locked) and the others get 409."""
    conversation, inbox = _conversation_to_act_on(session, principal, conversation_id, "assign")
    current = conversation.assignee_user_id
    if expected is not UNSET and expected != current:
        raise Conflict("the conversation was assigned meanwhile", {"assignee_user_id": current})
    if assignee is not None and not user_is_member(session, inbox, assignee):
        inboxes = conversation_inboxes(session, conversation)
        if not _member_of_any(session, inboxes, assignee):
            raise HttpError(f"{assignee} is not a member of the inbox {_inbox_names(inboxes)}")
    if assignee == current:
        return conversation
    conversation.assignee_user_id = assignee
    conversation.assigned_at = utcnow() if assignee else None
    outbox.record(session, "conversation_assigned", conversation.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "assignee_user_id": assignee,
        "previous_assignee_user_id": current, "assigned_by": principal.user_id})
    return conversation


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


def add_comment(session: Session, outbox: Outbox, principal: Principal, conversation_id: str, body: str,
                mentions: list[str], comment_id: str | None = None) -> Comment:
    """An internal note. Mentions: the explicit `mentions` (user ids, each must be a member) and
    every @user-id / @email in the text that names a member (other @words are plain text).
    `comment_id` (notifier's, from a Slack event id): the same id again adds nothing."""
    conversation, _ = _conversation_to_act_on(session, principal, conversation_id, "comment")
    existing = session.get(Comment, comment_id) if comment_id else None
    if existing is not None:
        return existing
    inboxes = conversation_inboxes(session, conversation)
    for user_id in mentions:
        if not _member_of_any(session, inboxes, user_id):
            raise HttpError(f"cannot mention {user_id}: not a member of the inbox {_inbox_names(inboxes)}")
    handles = mentioned_handles(body)
    resolved = {}
    for each in inboxes if handles else ():  # a member of any of the conversation's inboxes
        resolved = {**_member_ids_by_handle(session, each, handles), **resolved}
    mentioned = list(dict.fromkeys([*mentions, *resolved.values()]))
    comment = Comment(id=comment_id or str(uuid.uuid4()), conversation_id=conversation.id,
                      author_user_id=principal.user_id,
                      author_email=principal.email, body=body, mentions=mentioned, created_at=utcnow())
    session.add(comment)
    outbox.record(session, "comment_added", conversation.id, {
        "comment_id": comment.id, "conversation_id": conversation.id, "inbox_id": conversation.inbox_id,
        "author_user_id": principal.user_id, "body": body, "mentions": mentioned})
    session.flush()
    return comment


# --- tickets -----------------------------------------------------------------------------------

def _may_act_on_ticket(session: Session, principal: Principal, ticket: Ticket) -> bool:
    """An existing ticket is associated only by who may act on every conversation it has."""
    of_ticket = session.query(Inbox).join(Conversation, Conversation.inbox_id == Inbox.id) \
        .filter(Conversation.ticket_id == ticket.id).all()
    return all(access.can_act(principal, inbox.access) for inbox in of_ticket)


def associate_ticket(session: Session, outbox: Outbox, principal: Principal, conversation_id: str,
                     ticket_id: str | None = None, subject: str | None = None) -> Ticket:
    """Associate the ticket `ticket_id`, or create one (subject: given, else the conversation's)."""
    conversation, _ = _conversation_to_act_on(session, principal, conversation_id, "associate a ticket")
    ticket = None
    if ticket_id:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None or not _may_act_on_ticket(session, principal, ticket):
            raise NotFound(f"no ticket {ticket_id}")
    created = ticket is None
    if created:
        ticket = Ticket(id=str(uuid.uuid4()), subject=(subject or conversation.subject).strip() or "(no subject)",
                        status=OPEN, created_by=principal.user_id, created_at=utcnow())
        session.add(ticket)
        session.flush()
    if conversation.ticket_id == ticket.id:
        return ticket
    conversation.ticket_id = ticket.id
    outbox.record(session, "ticket_associated", ticket.id, {
        "ticket_id": ticket.id, "conversation_id": conversation.id, "inbox_id": conversation.inbox_id,
        "subject": ticket.subject, "status": ticket.status, "created": created, "associated_by": principal.user_id})
    return ticket


# --- moves and spam ----------------------------------------------------------------------------

def move_conversation(session: Session, outbox: Outbox, principal: Principal, conversation_id: str,
                      target_inbox_id: str) -> Conversation:
    """Move to the inbox `target_inbox_id` (the caller must act in both inboxes): the messages,
    comments and ticket stay with the conversation (history kept); its messages are scoped to the
    new inbox so replies thread there; the assignee is unassigned when not a member of the new
    inbox. A shared conversation (docs/architecture.md): the target becomes its home, the old home
    is left, the other inboxes it is shared into keep it (the assignee stays when a member of one)."""
    conversation, _ = _conversation_to_act_on(session, principal, conversation_id, "move")
    target = require_act(principal, session.get(Inbox, target_inbox_id), f"no inbox {target_inbox_id}",
                         "move conversations into it")
    source_id = conversation.inbox_id
    if source_id == target.id:
        return conversation
    ids = list(session.execute(select(Message.rfc_message_id).where(
        Message.conversation_id == conversation.id)).scalars())
    clash = session.execute(select(Message.rfc_message_id).where(
        Message.inbox_id == target.id, Message.rfc_message_id.in_(ids)).limit(1)).scalar_one_or_none() if ids else None
    if clash is not None:
        raise Conflict("the target inbox already holds a copy of a message of this conversation "
                       "(the email reached both inboxes)", {"rfc_message_id": clash})
    session.execute(update(Message).where(Message.conversation_id == conversation.id).values(inbox_id=target.id))
    session.execute(delete(ConversationInbox).where(ConversationInbox.conversation_id == conversation.id,
                                                    ConversationInbox.inbox_id == target.id))
    conversation.inbox_id = target.id
    session.flush()
    session.add(ConversationMove(conversation_id=conversation.id, from_inbox_id=source_id, to_inbox_id=target.id,
                                 moved_by=principal.user_id, moved_at=utcnow()))
    unassigned = False
    if conversation.assignee_user_id and not _member_of_any(session, conversation_inboxes(session, conversation),
                                                            conversation.assignee_user_id):
        previous, conversation.assignee_user_id, conversation.assigned_at = conversation.assignee_user_id, None, None
        unassigned = True
        outbox.record(session, "conversation_assigned", conversation.id, {
            "conversation_id": conversation.id, "inbox_id": target.id, "assignee_user_id": None,
            "previous_assignee_user_id": previous, "assigned_by": None})
    outbox.record(session, "conversation_moved", conversation.id, {
        "conversation_id": conversation.id, "from_inbox_id": source_id, "to_inbox_id": target.id,
        "inbox_id": target.id, "moved_by": principal.user_id, "unassigned": unassigned})
    return conversation


def mark_spam(session: Session, outbox: Outbox, principal: Principal, conversation_id: str,
              spam: bool) -> Conversation:
    """Mark spam (it leaves the inbox's views for the spam view) or not spam (it comes back, and
    the event carries the contact that contacts held back while it was spam)."""
    conversation, _ = _conversation_to_act_on(session, principal, conversation_id,
                                              "mark spam" if spam else "mark not spam")
    if conversation.spam == spam:
        return conversation
    conversation.spam = spam
    intake_ids = [] if spam else [i for i in session.execute(select(Message.intake_id).where(
        Message.conversation_id == conversation.id, Message.intake_id.is_not(None))
        .order_by(Message.received_at)).scalars()]
    outbox.record(session, "conversation_spam_marked", conversation.id, {
        "conversation_id": conversation.id, "inbox_id": conversation.inbox_id, "spam": spam,
        "marked_by": principal.user_id, "contact_email": conversation.contact_email,
        "contact_name": conversation.contact_name, "intake_ids": intake_ids})
    return conversation


# --- contacts ----------------------------------------------------------------------------------

@functools.cache
def _learn_contact_upsert(postgres: bool):
    """The address's contact, one upsert, built once per dialect (contact_created comes for about
    every second inbound email). On the table: a list of parameters is a plain executemany, not an
    ORM bulk insert (the entity's INSERT did not touch the session's objects either)."""
    known_contacts = KnownContact.__table__
    known = (postgres_insert if postgres else sqlite_insert)(known_contacts).values(
        email=bindparam("learnt_email"), contact_id=bindparam("learnt_contact"))
    return known.on_conflict_do_update(index_elements=[known_contacts.c.email],
                                       set_={"contact_id": known.excluded.contact_id})


def learn_contact(session: Session, contact_id: str, emails: list[str]) -> None:
    learnt = sorted({e for e in (try_normalise_email(x) for x in emails) if e})
    if not learnt:
        return
    session.execute(_learn_contact_upsert(is_postgres(session)),
                    [{"learnt_email": email, "learnt_contact": contact_id} for email in learnt])
    for email in learnt:
        # built with the values, not bound parameters: the ORM then also gives the contact to the
        # conversations this transaction loaded already (events of one group commit); it cannot
        # evaluate a bound parameter's value and would leave them stale
        session.execute(update(Conversation).where(
            Conversation.contact_email == email, Conversation.contact_id.is_(None)).values(contact_id=contact_id))


def update_contact(session: Session, contact_id: str, emails: list[str], removed: list[str]) -> None:
    """contacts' contact_updated: the contact's addresses now. An address it gave up is no longer
    its (threading stops counting it as the customer's); an address it gained is learnt. A removed
    address that another contact has taken meanwhile stays with that contact."""
    gone = {e for e in (try_normalise_email(x) for x in removed) if e}
    if gone:
        session.execute(delete(KnownContact).where(KnownContact.email.in_(gone),
                                                   KnownContact.contact_id == contact_id))
    learn_contact(session, contact_id, emails)


# --- attribution ---------------------------------------------------------------------------------

def correct_attribution(session: Session, outbox: Outbox, principal: Principal, conversation_id: str,
                        message_id: str, email: str, name: str | None) -> dict:
    """Give an inbound message to another person (auditable: the event keeps the previous one).
    When the message is the one the conversation's contact came from, the conversation follows."""
    conversation, _ = _conversation_to_act_on(session, principal, conversation_id, "correct attribution")
    message = session.get(Message, message_id)
    if message is None or message.conversation_id != conversation.id:
        raise HttpError(f"message {message_id} is not in conversation {conversation.id}")
    if message.direction != "in":
        raise HttpError("only inbound messages are attributed to a sender")
    normalised = try_normalise_email(email)
    if normalised is None:
        raise HttpError(f"not a valid email address: {email!r}")
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
        "previous": previous or None, "attributed_to": new, "corrected_by": principal.user_id})
    return {"message_id": message.id, "attributed_to": new, "previous": previous or None, "changed": True}
