"""Read models of the conversations service: what its HTTP API and its RPC answer (dicts), and
who may view what (404 through the shared HTTP errors, as for something that does not exist)."""

from __future__ import annotations

from sqlalchemy import Text, and_, bindparam, case, exists, false, func, literal_column, or_, select, true, union
from sqlalchemy.orm import Session, aliased

from conversations.domain import access, read_marks, search
from conversations.domain.calls import tel_url
from conversations.domain.conversation import CLOSED, OPEN, VIEWS
from conversations.models import (
    Call,
    Channel,
    Comment,
    Conversation,
    ConversationInbox,
    Inbox,
    InboxTeam,
    Member,
    Message,
    ReadMark,
    Ticket,
)
from conversations.schemas import (
    CallSchema,
    CommentSchema,
    ConversationSchema,
    ConversationSummarySchema,
    InboxSchema,
    MessageSchema,
    TicketSchema,
)
from mailroom_shared.auth import Principal, sign_blob_access, with_access
from mailroom_shared.db import aware, conflict_insert, is_postgres, utcnow
from mailroom_shared.http import Forbidden, HttpError, NotFound, schema_instance
from mailroom_shared.pagination import newest_first, next_cursor
from mailroom_shared.text import iso_time, reply_address

MAX_THREAD_MESSAGES = 50


# --- who may view ------------------------------------------------------------------------------

def require_view(principal: Principal, inbox: Inbox | None, not_found: str) -> Inbox:
    """The inbox if the principal may view it; else 404 with `not_found` (the same answer as for
    something that does not exist)."""
    if inbox is None or not access.can_view(principal, inbox.access):
        raise NotFound(not_found)
    return inbox


def viewable_inbox(session: Session, principal: Principal, inbox_id: str) -> Inbox:
    return require_view(principal, session.get(Inbox, inbox_id), f"no inbox {inbox_id}")


def conversation_inboxes(session: Session, conversation: Conversation) -> list[Inbox]:
    """The conversation's home inbox, then the inboxes it is shared into (one email sent to
    several of our inboxes: docs/architecture.md)."""
    shared = session.execute(select(Inbox).join(ConversationInbox, ConversationInbox.inbox_id == Inbox.id)
                             .where(ConversationInbox.conversation_id == conversation.id)
                             .order_by(ConversationInbox.shared_at, Inbox.id)).scalars().all()
    home = session.get(Inbox, conversation.inbox_id)
    return [i for i in (home, *shared) if i is not None]


def inbox_for(principal: Principal, inboxes: list[Inbox]) -> Inbox | None:
    """Of a conversation's inboxes, the one that gives the principal the most: the first it may
    act in, else the first it may view, else None."""
    rules = [i.access for i in inboxes]
    index = access.first_actable(principal, rules)
    index = access.first_viewable(principal, rules) if index is None else index
    return inboxes[index] if index is not None else None


def viewable_conversation(session: Session, principal: Principal, conversation_id: str) -> tuple[Conversation, Inbox]:
    """The conversation and the inbox of it that gives the principal the most (a member of any of
    its inboxes acts; whoever may view one of them views)."""
    conversation = session.get(Conversation, conversation_id)
    inbox = require_view(principal, conversation and inbox_for(principal, conversation_inboxes(session, conversation)),
                         f"no conversation {conversation_id}")
    return conversation, inbox


def viewable_message(session: Session, principal: Principal, message_id: str) -> Message:
    """The message (detached from the session: it outlives the transaction) if the principal may view it."""
    message = session.get(Message, message_id)
    conversation = message and session.get(Conversation, message.conversation_id)
    require_view(principal, conversation and inbox_for(principal, conversation_inboxes(session, conversation)),
                 f"no message {message_id}")
    session.expunge(message)
    return message


def _member_inboxes(principal: Principal):
    """SQL condition on Inbox: the inboxes the principal is a member of (domain/access.py)."""
    conditions = [Inbox.visibility == access.EVERYONE,
                  exists(select(Member.id).where(Member.inbox_id == Inbox.id,
                                                 Member.user_id == principal.user_id))]
    if principal.team_ids:
        conditions.append(exists(select(InboxTeam.team_id).where(
            InboxTeam.inbox_id == Inbox.id, InboxTeam.team_id.in_(sorted(principal.team_ids)))))
    return or_(*conditions)


def _viewable_inboxes(principal: Principal):
    """SQL condition on Inbox: the inboxes the principal may view (None = every inbox)."""
    if principal.sees_every_inbox:
        return None
    return _member_inboxes(principal)


def refused(error: HttpError) -> dict:
    return {"allowed": False, "status": error.status, "code": error.code, "message": error.message}


def access_answer(session: Session, principal: Principal, action: str, conversation_id: str | None = None,
                  inbox_id: str | None = None) -> dict:
    """May the principal `action` ("view" or a verb: "reply", …) on the conversation or inbox?
    `{"allowed": True, "principal": {...}, "inbox_id": ...}`, else the 404 / 403 it would get."""
    if conversation_id is not None:
        conversation = session.get(Conversation, conversation_id)
        inbox = conversation and inbox_for(principal, conversation_inboxes(session, conversation))
        missing = f"no conversation {conversation_id}"
    else:
        inbox, missing = (session.get(Inbox, inbox_id) if inbox_id else None), f"no inbox {inbox_id}"
    if inbox is None or not access.can_view(principal, inbox.access):
        return refused(NotFound(missing))
    if action != "view" and not access.can_act(principal, inbox.access):
        return refused(Forbidden(access.act_refusal(inbox.name, action)))
    return {"allowed": True, "principal": principal.as_dict(), "inbox_id": inbox.id}


# --- inboxes -----------------------------------------------------------------------------------


def inbox_view(inbox: Inbox, principal: Principal | None = None) -> dict:
    primary = next((c.address for c in inbox.channels if c.is_primary), None)
    return schema_instance(InboxSchema).dump({
        "id": inbox.id, "key": inbox.key, "name": inbox.name, "primary_address": primary,
        "channel_addresses": [c.address for c in inbox.channels], "channels": inbox.channels,
        "members": [{"user_id": m.user_id, "email": m.email} for m in inbox.members],
        "access": {"visibility": inbox.visibility, "teams": [t.team_id for t in inbox.teams]},
        "permissions": access.permissions(principal, inbox.access) if principal else None,
        "created_at": aware(inbox.created_at), "updated_at": aware(inbox.updated_at),
    })


def list_inboxes(session: Session, principal: Principal) -> dict:
    """The inboxes the principal may view (with what it may do in each)."""
    query = select(Inbox).order_by(Inbox.name, Inbox.id)
    condition = _viewable_inboxes(principal)
    if condition is not None:
        query = query.where(condition)
    inboxes = session.execute(query).scalars().all()
    return {"items": [inbox_view(i, principal) for i in inboxes], "next_cursor": None}


# --- conversations and messages ---------------------------------------------------------------

def _conversation_fields(conversation: Conversation) -> dict:
    return {
        "id": conversation.id, "inbox_id": conversation.inbox_id, "subject": conversation.subject,
        "contact": {"email": conversation.contact_email, "name": conversation.contact_name,
                    "contact_id": conversation.contact_id},
        "status": conversation.status, "spam": conversation.spam,
        "last_message_at": aware(conversation.last_message_at), "message_count": conversation.message_count,
        "snippet": conversation.snippet, "created_at": aware(conversation.created_at),
        "closed_at": aware(conversation.closed_at), "reopened_from": conversation.reopened_from,
        "related_conversation_id": conversation.related_conversation_id,
        "assignee_user_id": conversation.assignee_user_id, "assigned_at": aware(conversation.assigned_at),
        "ticket_id": conversation.ticket_id, **channel_fields(conversation),
    }


def channel_fields(conversation: Conversation) -> dict:
    """What the conversation came in on (docs/channels.md): `channel_type` email | chat | form,
    `channel_kind` whatsapp | messenger | livechat for chat (null otherwise)."""
    return {"channel_type": conversation.channel_type or "email", "channel_kind": conversation.channel_kind,
            "channel_id": conversation.connector_channel_id, "external_thread_id": conversation.external_thread_id}


def conversation_summary(conversation: Conversation) -> dict:
    return schema_instance(ConversationSummarySchema).dump(_conversation_fields(conversation))


def conversation_view(session: Session, conversation: Conversation, inbox: Inbox, principal: Principal) -> dict:
    messages = session.execute(select(Message).where(Message.conversation_id == conversation.id)
                               .order_by(Message.received_at, Message.created_at, Message.id)).scalars().all()
    comments = session.execute(select(Comment).where(Comment.conversation_id == conversation.id)
                               .order_by(Comment.created_at, Comment.id)).scalars().all()
    ticket = session.get(Ticket, conversation.ticket_id) if conversation.ticket_id else None
    primary = session.execute(select(Channel.address).where(
        Channel.inbox_id == conversation.inbox_id, Channel.is_primary.is_(True))).scalar_one_or_none()
    return schema_instance(ConversationSchema).dump({
        **_conversation_fields(conversation),
        "messages": [_message_fields(m, principal, with_html=False) for m in messages],
        "comments": comments, "ticket": ticket, "permissions": access.permissions(principal, inbox.access),
        "reply_token": conversation.reply_token,
        "reply_address": reply_address(primary, conversation.reply_token) if primary else None,
        "inbox_ids": [i.id for i in conversation_inboxes(session, conversation)],  # home first
        **call_fields(session, conversation),
    })


def _message_fields(message: Message, principal: Principal, *, with_html: bool = True,
                    html: str | None = None) -> dict:
    """A message with its raw-message and attachment URLs (also those inside the HTML, i.e. the
    `cid:` images) carrying a short-lived download token for this message only: the browser can
    load them (an <img> sends no bearer header) and ingest serves them only with it."""
    fields = {column.key: getattr(message, column.key) for column in Message.__table__.columns}
    token = sign_blob_access(message.intake_id, principal.user_id) if message.intake_id else None
    attachments = []
    body = message.html if html is None else html
    for attachment in message.attachments or []:
        url = attachment.get("url")
        signed = with_access(url, token)
        if with_html and body and url and signed != url:
            body = body.replace(f'"{url}"', f'"{signed}"')
        attachments.append({**attachment, "url": signed})
    fields.update(attachments=attachments, full_message_url=with_access(message.full_message_url, token),
                  full_message_view_url=with_access(_full_message_view_url(message), token))
    if with_html:
        fields["html"] = body
    return fields


def _full_message_view_url(message: Message) -> str | None:
    """ingest's page of the whole message, beside its raw bytes (`…/raw` → `…/view`)."""
    if message.direction != "in" or not message.intake_id or (message.flags or {}).get("quarantined"):
        return None
    return f"/api/ingest/messages/{message.intake_id}/view"


def message_view(message: Message, principal: Principal, html: str | None = None,
                 remote_images_loaded: bool = False) -> dict:
    fields = _message_fields(message, principal, html=html)
    if remote_images_loaded:
        fields.update(remote_images_blocked=0)
    return schema_instance(MessageSchema).dump({**fields, "remote_images_loaded": remote_images_loaded})


def shared_into(session: Session, principal: Principal, inbox_id: str | None) -> list[str]:
    """The conversations shared into the inbox (or into the inboxes the principal may view) from
    another home inbox (docs/architecture.md): a short list, read first, so that the views'
    queries keep their index scans when there is none."""
    query = select(ConversationInbox.conversation_id)
    if inbox_id is not None:
        query = query.where(ConversationInbox.inbox_id == inbox_id)
    else:
        viewable = _viewable_inboxes(principal)
        if viewable is None:
            return []  # every conversation is in scope anyway
        query = query.join(Inbox, Inbox.id == ConversationInbox.inbox_id).where(viewable)
    return sorted(set(session.execute(query).scalars()))


def _scope(principal: Principal, inbox_id: str | None, shared: list[str] | None = None):
    """SQL condition on Conversation: in one inbox, or in the inboxes the principal may view; and
    the conversations `shared` into it (shared_into)."""
    if inbox_id is not None:
        home = Conversation.inbox_id == inbox_id
    else:
        viewable = _viewable_inboxes(principal)
        if viewable is None:
            return true()
        home = Conversation.inbox_id.in_(select(Inbox.id).where(viewable))
    return or_(home, Conversation.id.in_(shared)) if shared else home


def _sent_condition():
    """SQL: the conversation has a message we sent (the Sent view)."""
    return exists(select(Message.id).where(Message.conversation_id == Conversation.id, Message.direction == "out"))


def _view_condition(view: str, principal: Principal, status, spam, assignee, sent):
    """The conversations of `view` over these columns (the conversations table's, or a subquery's)."""
    not_spam = spam.is_(False)
    if view == "open":
        return and_(not_spam, status == OPEN)
    if view == "closed":
        return and_(not_spam, status == CLOSED)
    if view == "mine":
        return and_(not_spam, status == OPEN, assignee == principal.user_id)
    if view == "unassigned":
        return and_(not_spam, status == OPEN, assignee.is_(None))
    if view == "sent":
        return and_(not_spam, sent)
    if view == "spam":
        return spam.is_(True)
    return not_spam  # all (but spam)


def _view_filter(view: str, principal: Principal, inbox_id: str | None, shared: list[str] | None = None):
    """The conversations of `view`, in one inbox or across the inboxes the principal may view."""
    return and_(_scope(principal, inbox_id, shared), _view_condition(
        view, principal, Conversation.status, Conversation.spam, Conversation.assignee_user_id, _sent_condition()))


# --- unread state (domain/read_marks.py) and search (domain/search.py) --------------------------

class SearchQueryTooLong(HttpError):
    status = 422
    code = "query_too_long"


def search_query(q: str | None) -> str | None:
    """`?q=` as looked for (None: no search); 422 beyond search.MAX_QUERY_LENGTH characters."""
    try:
        return search.normalise_query(q)
    except search.QueryTooLong as exc:
        raise SearchQueryTooLong(str(exc), {"q": [f"at most {search.MAX_QUERY_LENGTH} characters"]}) from exc


def _with_read_marks(query, principal: Principal):
    """`query` (over conversations) with the principal's read mark of each conversation, if any."""
    return query.outerjoin(ReadMark, and_(ReadMark.conversation_id == Conversation.id,
                                          ReadMark.user_id == principal.user_id))


def _unread_condition():
    """SQL of read_marks.is_unread, for a query `_with_read_marks`: marked unread, or an inbound
    message stored after the mark (any, without one). One index probe per conversation
    (ix_messages_inbound_created)."""
    inbound_after_mark = exists(select(Message.id).where(
        Message.conversation_id == Conversation.id, Message.direction == "in",
        or_(ReadMark.read_up_to.is_(None), Message.created_at > ReadMark.read_up_to)))
    return or_(ReadMark.marked_unread.is_(True), inbound_after_mark)


SEARCH_WINDOW = 200  # conversations of the view probed one by one before the indexed search


def _search_documents(session: Session, conversation, table: str):
    """The two searched documents (domain/search.py) as SQL: of `conversation` (the entity or an
    alias named `table`) and of a message; on PostgreSQL the indexed expressions themselves."""
    if is_postgres(session):
        return (literal_column(search.conversation_document_sql(table), Text),
                literal_column(search.message_document_sql(), Text))

    def joined(*parts):
        document = func.coalesce(parts[0], "")
        for part in parts[1:]:
            document = document + "\n" + func.coalesce(part, "")
        return document

    return (joined(conversation.subject, conversation.contact_email, conversation.contact_name),
            joined(Message.text, func.json_extract(Message.sender, "$.email"),
                   func.json_extract(Message.sender, "$.name")))


def _search_condition(session: Session, q: str):
    """SQL: the conversation matches `q` (domain/search.py): its id is among those whose own
    document or one of whose messages' matches, ILIKE over the two trigram-indexed documents on
    PostgreSQL (two bitmap index scans), LIKE over the same fields on SQLite; `q` is escaped
    (literal). Fast when few match; when most do, every message's text is compared."""
    pattern = search.like_pattern(q)
    matched = aliased(Conversation, name="matched_conversations")
    conversation_document, message_document = _search_documents(session, matched, "matched_conversations")
    return Conversation.id.in_(union(
        select(matched.id).where(conversation_document.ilike(pattern, escape=search.ESCAPE)),
        select(Message.conversation_id).where(message_document.ilike(pattern, escape=search.ESCAPE))))


def _search_probe(session: Session, q: str):
    """SQL: the same match, probed conversation by conversation (its own fields, then its
    messages by ix_messages_conversation_time): fast when many match, the page fills early."""
    pattern = search.like_pattern(q)
    conversation_document, message_document = _search_documents(session, Conversation, "conversations")
    return or_(conversation_document.ilike(pattern, escape=search.ESCAPE),
               exists(select(Message.id).where(Message.conversation_id == Conversation.id,
                                               message_document.ilike(pattern, escape=search.ESCAPE))))


def conversations_page(session: Session, principal: Principal, inbox_id: str | None, view: str,
                       cursor: dict | None, limit: int, q: str | None = None) -> dict:
    """Newest activity first; the cursor is the (last_message_at, id) of the last item returned.
    (A conversation that gets a new message while a client pages moves to the top: it is seen
    on the client's next refresh, not twice in one walk.) Each item says whether it is unread for
    the principal; `q` (search_query) keeps only the conversations that match it.

    One query; a search first probes the view's next SEARCH_WINDOW conversations one by one (a
    common text fills the page there), and only when they hold less than a page asks the trigram
    indexes (a rare text: found through the indexes, whatever the inbox's size)."""
    query = _with_read_marks(select(Conversation, _unread_condition().label("unread")), principal) \
        .where(_view_filter(view, principal, inbox_id, shared_into(session, principal, inbox_id)))
    rows = None
    if q:
        window = newest_first(select(Conversation.id).where(query.whereclause), Conversation.last_message_at,
                              Conversation.id, cursor, SEARCH_WINDOW - 1).subquery()
        rows = session.execute(newest_first(query.where(Conversation.id.in_(select(window.c.id)),
                                                        _search_probe(session, q)),
                                            Conversation.last_message_at, Conversation.id, cursor, limit)).all()
        if len(rows) <= limit:  # not a page's worth in the window: the indexed search, over all
            query, rows = query.where(_search_condition(session, q)), None
    if rows is None:
        rows = session.execute(newest_first(query, Conversation.last_message_at, Conversation.id, cursor,
                                            limit)).all()
    return {"items": [{**conversation_summary(conversation), "unread": bool(unread)}
                      for conversation, unread in rows[:limit]],
            "next_cursor": next_cursor(rows, limit, lambda row: row[0].last_message_at, lambda row: row[0].id)}


def view_counts(session: Session, principal: Principal, inbox_id: str | None) -> dict:
    """How many conversations each view holds (the numbers next to the view names), and beside
    them `unread_counts`: how many of those are unread for the principal. One query: each
    conversation in scope is read once (with its read mark and whether it is unread and sent),
    then every view is counted over those rows (MATERIALIZED: PostgreSQL would otherwise inline
    the subquery and probe the messages again for each count)."""
    in_scope = _with_read_marks(select(
        Conversation.status.label("status"), Conversation.spam.label("spam"),
        Conversation.assignee_user_id.label("assignee"), _sent_condition().label("sent"),
        _unread_condition().label("unread")), principal).where(
        _scope(principal, inbox_id, shared_into(session, principal, inbox_id)))
    rows = in_scope.cte("in_scope").prefix_with("MATERIALIZED", dialect="postgresql")
    counts, unread_counts = [], []
    for view in VIEWS:
        condition = _view_condition(view, principal, rows.c.status, rows.c.spam, rows.c.assignee,
                                    rows.c.sent.is_(True))
        counts.append(func.count().filter(condition).label(view))
        unread_counts.append(func.count().filter(and_(condition, rows.c.unread.is_(True))).label(f"unread_{view}"))
    row = session.execute(select(*counts, *unread_counts).select_from(rows)).one()._mapping
    return {**{view: row[view] or 0 for view in VIEWS},
            "unread_counts": {view: row[f"unread_{view}"] or 0 for view in VIEWS}}


# --- read marks: the caller's own state (domain/read_marks.py) ----------------------------------

def _set_read_mark(session: Session, principal: Principal, conversation_id: str, mark: read_marks.Mark) -> None:
    values = {"user_id": principal.user_id, "conversation_id": conversation_id, "read_up_to": mark.read_up_to,
              "marked_unread": mark.marked_unread, "marked_at": utcnow()}
    statement = conflict_insert(session, ReadMark.__table__).values(**values)
    session.execute(statement.on_conflict_do_update(
        index_elements=["user_id", "conversation_id"],
        set_={key: statement.excluded[key] for key in ("read_up_to", "marked_unread", "marked_at")}))


def mark_read(session: Session, principal: Principal, conversation_id: str) -> None:
    """Read up to the newest inbound message there is now (anyone who may view it, for themselves)."""
    conversation, _ = viewable_conversation(session, principal, conversation_id)
    newest = session.execute(select(func.max(Message.created_at)).where(
        Message.conversation_id == conversation.id, Message.direction == "in")).scalar_one_or_none()
    _set_read_mark(session, principal, conversation.id, read_marks.marked_read([aware(newest)] if newest else []))


def mark_unread(session: Session, principal: Principal, conversation_id: str) -> None:
    """Unread for the principal until they read it again."""
    conversation, _ = viewable_conversation(session, principal, conversation_id)
    _set_read_mark(session, principal, conversation.id, read_marks.marked_unread())


def comment_view(comment: Comment) -> dict:
    return schema_instance(CommentSchema).dump(comment)


def ticket_view(ticket: Ticket) -> dict:
    return schema_instance(TicketSchema).dump(ticket)


# --- calls (docs/calls.md) ---------------------------------------------------------------------

def _call_fields(call: Call) -> dict:
    fields = {column.key: getattr(call, column.key) for column in Call.__table__.columns}
    return {**fields, "called_at": aware(call.called_at), "created_at": aware(call.created_at)}


def call_view(call: Call) -> dict:
    return schema_instance(CallSchema).dump(_call_fields(call))


def _calls(session: Session, conversation_id: str) -> list[Call]:
    return list(session.execute(select(Call).where(Call.conversation_id == conversation_id)
                                .order_by(Call.called_at, Call.created_at, Call.id)).scalars())


def calls_of(session: Session, conversation_id: str) -> list[dict]:
    """The conversation's calls, oldest first."""
    return [call_view(c) for c in _calls(session, conversation_id)]


def contact_phone(session: Session, conversation: Conversation) -> str | None:
    """The contact's number (E.164) as this service knows it: of the latest call on any of the
    contact's conversations (this one's if the contact is not known yet), else the WhatsApp
    number its chat thread came from (its own, then any of the contact's)."""
    scope = (Conversation.contact_id == conversation.contact_id if conversation.contact_id
             else Conversation.id == conversation.id)
    latest = session.execute(
        select(Call.phone_number).join(Conversation, Conversation.id == Call.conversation_id).where(scope)
        .order_by(Call.called_at.desc(), Call.created_at.desc(), Call.id.desc()).limit(1)).scalar_one_or_none()
    if latest:
        return latest
    if conversation.channel_kind == "whatsapp" and conversation.external_thread_id:
        return conversation.external_thread_id
    if not conversation.contact_id:
        return None
    return session.execute(
        select(Conversation.external_thread_id).where(
            Conversation.contact_id == conversation.contact_id, Conversation.channel_kind == "whatsapp",
            Conversation.external_thread_id.is_not(None))
        .order_by(Conversation.last_message_at.desc(), Conversation.id.desc()).limit(1)).scalar_one_or_none()


def call_fields(session: Session, conversation: Conversation) -> dict:
    """What a conversation's view says of calls (ConversationSchema dumps them): its calls, the
    contact's number and its tel: link."""
    phone = contact_phone(session, conversation)
    return {"calls": [_call_fields(c) for c in _calls(session, conversation.id)], "contact_phone": phone,
            "contact_tel_url": tel_url(phone)}


# --- our emails: the Sent view -----------------------------------------------------------------

def sent_page(session: Session, inbox_id: str, cursor: dict | None, limit: int, principal: Principal) -> dict:
    """The inbox's Sent view: our messages, newest first, each with its delivery state (also those
    of the conversations shared into the inbox)."""
    shared = shared_into(session, principal, inbox_id)
    scope = or_(Message.inbox_id == inbox_id, Message.conversation_id.in_(shared)) if shared \
        else Message.inbox_id == inbox_id
    query = newest_first(select(Message).where(scope, Message.direction == "out"),
                         Message.received_at, Message.id, cursor, limit)
    rows = session.execute(query).scalars().all()
    items = []
    for message in rows[:limit]:
        item = message_view(message, principal)
        item["delivery"] = (message.flags or {}).get("delivery")
        items.append(item)
    return {"items": items, "next_cursor": next_cursor(rows, limit, lambda m: m.received_at)}


# --- what outbound asks before it sends: From identities and reply context ---------------------

def sending_refusal(principal: dict | None, inbox: Inbox | None) -> dict | None:
    """{} (not found) / {"forbidden": …} when `principal` (as_dict) may not send from `inbox`;
    None if it may. Without a principal (another service calling), only existence is checked."""
    if inbox is None:
        return {}
    return _refusal(principal, inbox.name, inbox.access)


def _refusal(principal: dict | None, inbox_name: str, rules: access.InboxAccess) -> dict | None:
    if principal is None:
        return None
    caller = principal_from_dict(principal)
    if not access.can_view(caller, rules):
        return {}
    if not access.can_act(caller, rules):
        return {"forbidden": f"you can view the inbox {inbox_name!r} but not send from it: only its members can act"}
    return None


def inbox_identities(inbox: Inbox) -> dict:
    """The inbox's From identities (its channels)."""
    return _identities(inbox.id, inbox.name, inbox.channels)


def _identities(inbox_id: str, name: str, channels) -> dict:
    """`channels`: Channel rows (or rows with their address, display_name, is_primary), primary first."""
    primary = next((c.address for c in channels if c.is_primary), None)
    return {"inbox_id": inbox_id, "name": name, "primary_address": primary,
            "identities": [{"email": c.address, "name": c.display_name, "primary": c.is_primary}
                           for c in channels]}


def _context_message(message) -> dict:
    """`message`: a Message, or a row of _CONTEXT_MESSAGE_COLUMNS."""
    return {
        "id": message.id, "direction": message.direction, "rfc_message_id": message.rfc_message_id,
        "subject": message.subject, "sender": message.sender, "attributed_to": message.attributed_to,
        "forward": message.forward, "to": message.to or [], "cc": message.cc or [], "reply_to": message.reply_to or [],
        "in_reply_to": message.in_reply_to or [], "references": message.references or [], "text": message.text,
        "html": message.html, "date": message.date_header, "received_at": iso_time(message.received_at),
        "channel_address": message.channel_address,
        "flags": message.flags or {},  # auto_submitted, bounce, spam, loop, return_path (auto-acknowledgement)
    }


# Outbound asks for the reply context before every reply, compose-less send and auto-acknowledgement
# (issue #16: it was ~10 ORM statements, loading each inbox with its channels, members and teams).
# It is read here with a few Core statements instead (built once, below): the conversation with its
# home inbox's name and the first inbound channel; the caller's standing in each of its inboxes
# (EXISTS, not the member lists); the home inbox's channels; the message replied to. No answer is
# cached: membership changes count from the next request.
_CONTEXT_MESSAGE_COLUMNS = (
    Message.id, Message.direction, Message.rfc_message_id, Message.subject, Message.sender, Message.attributed_to,
    Message.forward, Message.to, Message.cc, Message.reply_to, Message.in_reply_to, Message.references,
    Message.text, Message.html, Message.date_header, Message.received_at, Message.channel_address, Message.flags)


# The statements of a reply's context (outbound asks for one per reply, issue #16), built once
# with bound parameters: building them per call (columns, joins, the correlated subquery) and
# their cache keys cost more of SQLAlchemy's time than running them.
_FIRST_INBOUND_CHANNEL = (select(Message.channel_address)
                          .where(Message.conversation_id == Conversation.id, Message.direction == "in")
                          .order_by(Message.received_at, Message.id).limit(1).correlate(Conversation).scalar_subquery())
_CONTEXT_CONVERSATION = (
    select(Conversation.id, Conversation.inbox_id, Conversation.subject, Conversation.status,
           Conversation.reply_token, Conversation.created_at, Conversation.contact_email,
           Conversation.contact_name, Conversation.channel_type, Conversation.channel_kind,
           Conversation.connector_channel_id, Conversation.external_thread_id,
           Inbox.name.label("inbox_name"), _FIRST_INBOUND_CHANNEL.label("first_inbound_channel"))
    .join(Inbox, Inbox.id == Conversation.inbox_id).where(Conversation.id == bindparam("conversation_id")))


def _context_conversation(session: Session, conversation_id: str):
    """The conversation's fields a reply needs, its home inbox's name and the channel its first
    inbound message came in on (a row, or None)."""
    return session.execute(_CONTEXT_CONVERSATION, {"conversation_id": conversation_id}).first()


class _CallerInbox:
    """One of a conversation's inboxes as the caller stands in it: InboxAccess with only the
    caller's own membership (their user id, their teams if one of them is the inbox's), which the
    rules of domain/access.py answer exactly as with the full member and team lists."""

    def __init__(self, row, caller: Principal):
        self.id, self.name = row.id, row.name
        self.access = access.InboxAccess(
            row.visibility, frozenset({caller.user_id}) if row.is_member else frozenset(),
            frozenset(caller.team_ids) if row.in_team else frozenset())


def _caller_inboxes_statement(with_teams: bool):
    home = bindparam("home_inbox_id")
    shared, conversation_id = ConversationInbox, bindparam("conversation_id")
    is_member = exists(select(Member.id).where(Member.inbox_id == Inbox.id, Member.user_id == bindparam("user_id")))
    in_team = (exists(select(InboxTeam.team_id).where(
        InboxTeam.inbox_id == Inbox.id, InboxTeam.team_id.in_(bindparam("team_ids", expanding=True))))
        if with_teams else false())
    return (select(Inbox.id, Inbox.name, Inbox.visibility, is_member.label("is_member"), in_team.label("in_team"))
            .outerjoin(shared, and_(shared.inbox_id == Inbox.id, shared.conversation_id == conversation_id))
            .where(or_(Inbox.id == home, shared.conversation_id.is_not(None)))
            .order_by(case((Inbox.id == home, 0), else_=1), shared.shared_at, Inbox.id))


_CALLER_INBOXES = {False: _caller_inboxes_statement(False), True: _caller_inboxes_statement(True)}


def _caller_inboxes(session: Session, conversation, caller: Principal) -> list[_CallerInbox]:
    """The conversation's home inbox, then those it is shared into (as conversation_inboxes)."""
    values = {"home_inbox_id": conversation.inbox_id, "conversation_id": conversation.id, "user_id": caller.user_id}
    if caller.team_ids:
        values["team_ids"] = sorted(caller.team_ids)
    rows = session.execute(_CALLER_INBOXES[bool(caller.team_ids)], values).all()
    return [_CallerInbox(row, caller) for row in rows]


def reply_context_for(session: Session, conversation_id: str, message_id: str | None, include_thread: bool,
                      principal: dict | None) -> dict | None:
    """conversations' get_reply_context: None when there is no such conversation or the caller
    (Principal.as_dict(); None: another service) may not see it, {"forbidden": …} when the caller
    may view but not act in any of its inboxes, else reply_context's answer. The inbox asked
    about is the one that gives the caller the most (inbox_for: a member of an inbox the
    conversation is shared into may reply); the reply goes out from the home inbox's identities."""
    conversation = _context_conversation(session, conversation_id)
    if conversation is None:
        return None
    if principal is not None:
        caller = principal_from_dict(principal)
        inboxes = _caller_inboxes(session, conversation, caller)
        inbox = inbox_for(caller, inboxes) or (inboxes[0] if inboxes else None)
        refusal = {} if inbox is None else _refusal(principal, inbox.name, inbox.access)
        if refusal is not None:
            return refusal or None
    return _reply_context(session, conversation, message_id, include_thread)


def reply_context(session: Session, conversation_id: str, message_id: str | None,
                  include_thread: bool) -> dict | None:
    """What a reply or forward needs from a conversation: the message replied to (given, else the
    latest inbound one, else the latest of ours), the thread's Message-IDs, the reply token and
    the channel the conversation came in on (else the inbox's primary address)."""
    conversation = _context_conversation(session, conversation_id)
    return _reply_context(session, conversation, message_id, include_thread) if conversation is not None else None


_CONTEXT_MESSAGES = select(*_CONTEXT_MESSAGE_COLUMNS).where(Message.conversation_id == bindparam("conversation_id"))
_CONTEXT_MESSAGE = _CONTEXT_MESSAGES.where(Message.id == bindparam("message_id"))
_LATEST_MESSAGE = _CONTEXT_MESSAGES.order_by(
    Message.received_at.desc(), Message.created_at.desc(), Message.id.desc()).limit(1)
_LATEST_INBOUND_MESSAGE = _LATEST_MESSAGE.where(Message.direction == "in")
_THREAD_MESSAGES = _CONTEXT_MESSAGES.order_by(Message.received_at, Message.created_at, Message.id).limit(
    MAX_THREAD_MESSAGES)
_INBOX_CHANNELS = (select(Channel.address, Channel.display_name, Channel.is_primary)
                   .where(Channel.inbox_id == bindparam("inbox_id")).order_by(Channel.is_primary.desc(), Channel.id))


def _reply_context(session: Session, conversation, message_id: str | None, include_thread: bool) -> dict:
    of_conversation = {"conversation_id": conversation.id}
    if message_id:
        message = session.execute(_CONTEXT_MESSAGE, {**of_conversation, "message_id": message_id}).first()
    else:  # the latest inbound message, else the latest of ours
        message = session.execute(_LATEST_INBOUND_MESSAGE, of_conversation).first() \
            or session.execute(_LATEST_MESSAGE, of_conversation).first()
    channels = session.execute(_INBOX_CHANNELS, {"inbox_id": conversation.inbox_id}).all()
    addresses = {c.address for c in channels}
    candidates = [message.channel_address if message is not None else None, conversation.first_inbound_channel]
    channel_address = next((c for c in candidates if c and c in addresses), None)
    primary = next((c.address for c in channels if c.is_primary), None)
    result = {
        "conversation": {"id": conversation.id, "inbox_id": conversation.inbox_id, "subject": conversation.subject,
                         "status": conversation.status, "reply_token": conversation.reply_token,
                         "created_at": iso_time(conversation.created_at),
                         "contact": {"email": conversation.contact_email, "name": conversation.contact_name}},
        "inbox": _identities(conversation.inbox_id, conversation.inbox_name, channels),
        "message": _context_message(message) if message is not None else None,
        "channel_address": channel_address or primary,
        "reply_address": reply_address(channel_address or primary, conversation.reply_token)
        if (channel_address or primary) else None,
        # chat replies go to the connector (outbound), not by email; form replies go by email
        **{key: value for key, value in channel_fields(conversation).items()
           if key in ("channel_type", "channel_kind")},
        "chat": {"channel_id": conversation.connector_channel_id, "thread_id": conversation.external_thread_id}
        if conversation.channel_type == "chat" else None,
    }
    result["conversation"].update(channel_fields(conversation))
    if include_thread:
        rows = session.execute(_THREAD_MESSAGES, of_conversation).all()
        result["thread"] = [_context_message(m) for m in rows]
    return result


# --- users by email (notifier: who a Slack user is) ---------------------------------------------

def principal_for_email(session: Session, email: str | None) -> dict | None:
    """The mailroom user with this email as Principal.as_dict() (the last token seen with it,
    else an inbox's explicit member), without roles: what they may do then follows membership."""
    if not isinstance(email, str) or not email.strip() or len(email) > 320:
        return None
    from conversations.models import KnownUser  # (only this query reads the directory of users)

    address = email.strip().lower()
    known = session.execute(select(KnownUser).where(func.lower(KnownUser.email) == address)
                            .order_by(KnownUser.updated_at.desc()).limit(1)).scalar_one_or_none()
    if known is not None:
        return {"user_id": known.user_id, "email": known.email, "team_ids": sorted(known.team_ids or []),
                "roles": []}
    member = session.execute(select(Member).where(func.lower(Member.email) == address)
                             .order_by(Member.id).limit(1)).scalar_one_or_none()
    if member is None:
        return None
    return {"user_id": member.user_id, "email": member.email, "team_ids": [], "roles": []}


def principal_from_dict(principal: dict) -> Principal:
    return Principal(user_id=principal["user_id"], email=principal.get("email"),
                     team_ids=frozenset(principal.get("team_ids") or ()), roles=frozenset(principal.get("roles") or ()))
