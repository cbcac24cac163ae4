"""The conversations service as it runs in production: a real process, real RabbitMQ and PostgreSQL."""

import concurrent.futures
import datetime as dt
import json
import time
import uuid
from pathlib import Path

import pika
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from mailroom_shared.db import normalise_url
from mailroom_shared.migrations import upgrade
from mailroom_testing.publishing import publish_event, queue_depth
from mailroom_testing.specs import CONVERSATIONS
from mailroom_testing.subscriber import EventSubscriber

pytestmark = pytest.mark.integration

SUPPORT = "support@mailroom.test"
INGEST_INBOX_QUEUE = "evt-conversations-inbox_updated--ingest.handle_inbox_updated"
RECEIVED_QUEUE = "evt-ingest-message_received--conversations.handle_message_received"
BASE_TIME = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)


def message_received(*, sender="ada@example.com", name="Ada Customer", subject="Where is my order?",
                     message_id=None, in_reply_to=(), references=(), reply_token=None, channel=SUPPORT,
                     spam=False, auto_submitted=False, minutes=0, forward=None, attributed_to=None,
                     text="Hello,\n\n  my order   #42 has not arrived.", html=None, html_truncated=False,
                     attachments=()):
    intake_id = str(uuid.uuid4())
    return {
        "intake_id": intake_id, "channel_address": channel, "via": "smtp",
        "message_id": message_id or f"{uuid.uuid4()}@example.com", "subject": subject,
        "date": "Wed, 25 Nov 2026 10:00:00 +0000", "sender": {"name": name, "email": sender},
        "attributed_to": attributed_to or {"name": name, "email": sender},
        "to": [{"name": None, "email": channel}], "cc": [{"name": "Bob", "email": "bob@example.com"}],
        "reply_to": [], "in_reply_to": list(in_reply_to), "references": list(references),
        "reply_token": reply_token, "text": text, "html": html, "html_truncated": html_truncated,
        "size": 1234, "raw_url": f"/api/ingest/messages/{intake_id}/raw", "attachments": list(attachments),
        "received_at": (BASE_TIME + dt.timedelta(minutes=minutes)).isoformat(),
        "flags": {"auto_submitted": auto_submitted, "bounce": False, "spam": spam, "loop": False, "reasons": []},
        "forward": forward,
    }


def publish(stack, data):
    publish_event(stack.amqp_uri, "message_received", data["intake_id"], data)
    return data


@pytest.fixture
def service(stack_factory):
    return stack_factory([CONVERSATIONS])


def support_inbox(stack):
    status, body = stack.get("/api/inboxes")
    assert status == 200, body
    [inbox] = [i for i in body["items"] if SUPPORT in i["channel_addresses"]]
    return inbox


def view(stack, inbox_id, name="open", **params):
    query = "&".join(f"{k}={v}" for k, v in {"view": name, **params}.items())
    status, body = stack.get(f"/api/inboxes/{inbox_id}/conversations?{query}")
    assert status == 200, body
    return body


def conversation_of(stack, events, data):
    """The conversation a published message landed in (waits for its message_added)."""
    [added] = events.wait_for("message_added", lambda e: e["data"]["intake_id"] == data["intake_id"])
    status, conversation = stack.get(f"/api/conversations/{added['data']['conversation_id']}")
    assert status == 200
    return conversation


def drain_queue(amqp_uri, queue):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri))
    try:
        channel, bodies = connection.channel(), []
        while True:
            method, _props, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return bodies
            bodies.append(json.loads(body))
    finally:
        connection.close()


def test_demo_inbox_is_seeded_and_announced_once_per_change(service):
    inbox = support_inbox(service)
    assert inbox["name"] == "Support" and inbox["primary_address"] == SUPPORT
    assert inbox["members"] == [{"user_id": "agent-1", "email": "agent@mailroom.test"}]
    service.eventually(lambda: queue_depth(service.amqp_uri, INGEST_INBOX_QUEUE) == 1)

    service.stop()  # a restart with the same file announces nothing new …
    service.start()
    status, _ = service.request("PUT", f"/api/inboxes/{inbox['id']}", {
        "members": [{"user_id": "agent-1", "email": "agent@mailroom.test"},
                    {"user_id": "agent-2", "email": "Tom@Mailroom.test"}]})
    assert status == 200
    service.eventually(lambda: queue_depth(service.amqp_uri, INGEST_INBOX_QUEUE) == 2)
    seeded, changed = drain_queue(service.amqp_uri, INGEST_INBOX_QUEUE)  # … only the change made after it
    assert seeded["type"] == "mailroom.inbox_updated.v1"
    assert seeded["data"]["channel_addresses"] == [SUPPORT]
    assert seeded["data"]["member_emails"] == ["agent@mailroom.test"]
    assert changed["data"]["member_emails"] == ["agent@mailroom.test", "tom@mailroom.test"]
    assert support_inbox(service)["id"] == inbox["id"]


def test_new_message_starts_a_conversation_shown_in_the_open_view(service):
    inbox = support_inbox(service)
    attachment = {"filename": "invoice.pdf", "content_type": "application/pdf", "size": 10, "sha256": "ab" * 32,
                  "disposition": "attachment", "content_id": None, "url": "/api/ingest/attachments/1"}
    forward = {"original_sender": {"name": "Carol", "email": "carol@customer.example"},
               "original_subject": "Broken widget", "original_date": None, "detected_by": "text_block:gmail",
               "forwarded_by": {"name": "Agent", "email": "agent@mailroom.test"}, "trusted": True}
    with EventSubscriber(service.amqp_uri, [("conversations.events", "#")]) as events:
        data = publish(service, message_received(
            sender="agent@mailroom.test", name="Agent", subject="Fwd: Broken widget", forward=forward,
            attributed_to={"name": "Carol", "email": "Carol@Customer.example"},
            html="<p>Hello <b>team</b></p>", html_truncated=True, attachments=[attachment]))
        [created] = events.wait_for("conversation_created")
        [added] = events.wait_for("message_added")
        publish_event(service.amqp_uri, "contact_created", "contact-1", {
            "contact_id": "contact-1", "name": "Carol", "emails": ["carol@customer.example"],
            "created_from": "x"})

    assert created["source"] == "mailroom/conversations" and created["data"]["spam"] is False
    assert created["data"]["contact_email"] == "carol@customer.example"
    assert added["data"]["intake_id"] == data["intake_id"]
    assert added["data"]["attributed_to"]["email"] == "Carol@Customer.example"
    assert added["data"]["sender"]["email"] == "agent@mailroom.test"
    assert added["data"]["conversation_id"] == created["data"]["conversation_id"]

    [item] = view(service, inbox["id"])["items"]
    assert item["id"] == created["data"]["conversation_id"]
    assert item["subject"] == "Fwd: Broken widget" and item["status"] == "open" and item["message_count"] == 1
    assert item["snippet"] == "Hello, my order #42 has not arrived."
    assert item["last_message_at"].startswith("2026-11-25T10:00:00")
    assert item["contact"]["email"] == "carol@customer.example" and item["contact"]["name"] == "Carol"
    service.eventually(lambda: service.get(f"/api/conversations/{item['id']}")[1]["contact"]["contact_id"]
                       == "contact-1")

    conversation = service.get(f"/api/conversations/{item['id']}")[1]
    assert conversation["reply_address"] == f"support+{conversation['reply_token']}@mailroom.test"
    [message] = conversation["messages"]
    assert message["from"]["email"] == "agent@mailroom.test"  # both people of a forward are shown
    assert message["forward"]["original_sender"]["email"] == "carol@customer.example"
    assert message["forward"]["forwarded_by"]["email"] == "agent@mailroom.test"
    assert message["cc"] == [{"name": "Bob", "email": "bob@example.com"}]
    # URLs carry a download token for this message (ingest serves the bytes only with it)
    assert message["attachments"][0]["url"].startswith("/api/ingest/attachments/1?access=")
    assert message["has_html"] is True and "html" not in message

    status, full = service.get(f"/api/messages/{message['id']}")
    assert status == 200
    assert full["html"] == "<p>Hello <b>team</b></p>" and full["html_truncated"] is True
    assert full["full_message_url"].startswith(data["raw_url"] + "?access=")
    assert full["text"] == data["text"] and full["rfc_message_id"] == data["message_id"]


def test_replies_thread_by_in_reply_to_references_and_reply_token(service):
    inbox = support_inbox(service)
    with EventSubscriber(service.amqp_uri, [("conversations.events", "#")]) as events:
        first = publish(service, message_received())
        conversation = conversation_of(service, events, first)
        # a different subject does not matter; the headers do
        replies = [
            message_received(subject="Re: Where is my order?", in_reply_to=[first["message_id"]], minutes=1),
            message_received(subject="anything", references=["unknown@elsewhere", first["message_id"]],
                             minutes=2),
            message_received(subject="no headers at all", reply_token=conversation["reply_token"].upper(),
                             minutes=3),
        ]
        for reply in replies:
            publish(service, reply)
            assert conversation_of(service, events, reply)["id"] == conversation["id"]
        unrelated = publish(service, message_received(subject="Where is my order?", minutes=4))
        other = conversation_of(service, events, unrelated)  # same subject, no headers: a new conversation
        assert len(events.of_type("conversation_created")) == 2

    assert other["id"] != conversation["id"]
    items = view(service, inbox["id"])["items"]
    assert [i["id"] for i in items] == [other["id"], conversation["id"]]
    threaded = service.get(f"/api/conversations/{conversation['id']}")[1]
    assert threaded["message_count"] == 4
    assert [m["subject"] for m in threaded["messages"]] == [
        "Where is my order?", "Re: Where is my order?", "anything", "no headers at all"]


def settled(stack):
    """Every message_received was handled (none waiting, in flight or waiting for a retry)."""
    queues = [RECEIVED_QUEUE, RECEIVED_QUEUE + ".retry.1", RECEIVED_QUEUE + ".retry.2"]
    return all(queue_depth(stack.amqp_uri, q) == 0 for q in queues)


def test_the_same_message_id_twice_is_stored_once(service):
    inbox = support_inbox(service)
    with EventSubscriber(service.amqp_uri, [("conversations.events", "message_added")]) as events:
        original = publish(service, message_received(message_id="dup@example.com"))
        conversation_of(service, events, original)
        publish(service, message_received(message_id="<dup@example.com>", minutes=5))  # e.g. via IMAP too
        # and the same new message arriving through several paths at once
        copies = [message_received(message_id="race@example.com", subject="marker", minutes=6) for _ in range(6)]
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda d: publish(service, d), copies))
        events.wait_for("message_added", lambda e: e["data"]["rfc_message_id"] == "race@example.com")
        service.eventually(lambda: settled(service))
        time.sleep(0.5)
        added = [e["data"]["rfc_message_id"] for e in events.of_type("message_added")]
    assert sorted(added) == ["dup@example.com", "race@example.com"]
    assert queue_depth(service.amqp_uri, RECEIVED_QUEUE + ".dlq") == 0
    items = view(service, inbox["id"])["items"]
    assert sorted(i["subject"] for i in items) == ["Where is my order?", "marker"]
    assert all(i["message_count"] == 1 for i in items)


def test_simultaneous_replies_all_land_in_one_conversation(service):
    inbox = support_inbox(service)
    with EventSubscriber(service.amqp_uri, [("conversations.events", "#")]) as events:
        first = publish(service, message_received())
        conversation = conversation_of(service, events, first)
        replies = [message_received(in_reply_to=[first["message_id"]], minutes=n, text=f"reply {n}")
                   for n in range(1, 11)]
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            list(pool.map(lambda d: publish(service, d), replies))
        events.wait_for("message_added", count=11)
        assert len(events.of_type("conversation_created")) == 1
    [item] = view(service, inbox["id"])["items"]
    assert item["id"] == conversation["id"] and item["message_count"] == 11
    assert item["snippet"] == "reply 10" and item["last_message_at"].startswith("2026-11-25T10:10:00")


def test_a_reply_to_a_closed_conversation_reopens_it_but_an_auto_reply_does_not(service):
    inbox = support_inbox(service)
    with EventSubscriber(service.amqp_uri, [("conversations.events", "#")]) as events:
        first = publish(service, message_received())
        conversation = conversation_of(service, events, first)
        status, closed = service.post(f"/api/conversations/{conversation['id']}/close")
        assert status == 200 and closed["status"] == "closed"
        events.wait_for("conversation_closed")
        assert view(service, inbox["id"])["items"] == []
        assert [i["id"] for i in view(service, inbox["id"], "closed")["items"]] == [conversation["id"]]

        out_of_office = publish(service, message_received(subject="Out of office", auto_submitted=True,
                                                          in_reply_to=[first["message_id"]], minutes=1))
        assert conversation_of(service, events, out_of_office)["status"] == "closed"

        reply = publish(service, message_received(in_reply_to=[first["message_id"]], minutes=2))
        reopened = conversation_of(service, events, reply)
        [event] = events.wait_for("conversation_reopened")
    assert reopened["id"] == conversation["id"] and reopened["status"] == "open"
    assert reopened["message_count"] == 3
    assert event["data"]["reason"] == "reply" and event["data"]["conversation_id"] == conversation["id"]
    assert [i["id"] for i in view(service, inbox["id"])["items"]] == [conversation["id"]]
    assert view(service, inbox["id"], "closed")["items"] == []


def test_with_reply_to_closed_new_a_reply_starts_a_linked_conversation(stack_factory):
    service = stack_factory([CONVERSATIONS], extra_env={"CONVERSATIONS_REPLY_TO_CLOSED": "new"})
    inbox = support_inbox(service)
    with EventSubscriber(service.amqp_uri, [("conversations.events", "#")]) as events:
        first = publish(service, message_received())
        old = conversation_of(service, events, first)
        assert service.post(f"/api/conversations/{old['id']}/close")[0] == 200
        reply = publish(service, message_received(in_reply_to=[first["message_id"]], minutes=1))
        new = conversation_of(service, events, reply)
        # another reply to the old thread joins the continuation rather than starting a third one
        later = publish(service, message_received(references=[first["message_id"]], minutes=2))
        assert conversation_of(service, events, later)["id"] == new["id"]
        created = events.of_type("conversation_created")
    assert new["id"] != old["id"] and new["reopened_from"] == old["id"]
    assert [c["data"]["reopened_from"] for c in created] == [None, old["id"]]
    assert not events.of_type("conversation_reopened")
    assert service.get(f"/api/conversations/{old['id']}")[1]["status"] == "closed"
    assert [i["id"] for i in view(service, inbox["id"])["items"]] == [new["id"]]


def test_spam_is_shown_only_in_the_spam_view(service):
    inbox = support_inbox(service)
    with EventSubscriber(service.amqp_uri, [("conversations.events", "#")]) as events:
        clean = publish(service, message_received())
        real = conversation_of(service, events, clean)
        spam = publish(service, message_received(sender="spammer@example.net", subject="WIN", spam=True, minutes=1))
        spam_conversation = conversation_of(service, events, spam)
        # a spam-flagged message quoting a real thread's Message-ID is not injected into it
        sneaky = publish(service, message_received(sender="spammer@example.net", spam=True,
                                                   in_reply_to=[clean["message_id"]], minutes=2))
        sneaky_conversation = conversation_of(service, events, sneaky)
        spam_created = [e for e in events.of_type("conversation_created") if e["data"]["spam"]]
    assert len(spam_created) == 2
    assert sneaky_conversation["spam"] is True and sneaky_conversation["related_conversation_id"] == real["id"]
    assert service.get(f"/api/conversations/{real['id']}")[1]["message_count"] == 1
    for name in ("open", "all"):
        assert [i["id"] for i in view(service, inbox["id"], name)["items"]] == [real["id"]]
    assert view(service, inbox["id"], "closed")["items"] == []
    assert [i["id"] for i in view(service, inbox["id"], "spam")["items"]] == [
        sneaky_conversation["id"], spam_conversation["id"]]


def test_pages_return_every_conversation_once_newest_activity_first(service):
    inbox = support_inbox(service)
    with EventSubscriber(service.amqp_uri, [("conversations.events", "message_added")]) as events:
        firsts = [publish(service, message_received(subject=f"topic {n}", minutes=n)) for n in range(7)]
        events.wait_for("message_added", count=7)
        # new activity on the oldest conversation moves it to the top
        publish(service, message_received(in_reply_to=[firsts[0]["message_id"]], minutes=30))
        events.wait_for("message_added", count=8)

    seen, cursor, pages = [], None, 0
    while True:
        page = view(service, inbox["id"], limit=3, **({"cursor": cursor} if cursor else {}))
        pages += 1
        seen += [i["subject"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert seen == ["topic 0", "topic 6", "topic 5", "topic 4", "topic 3", "topic 2", "topic 1"]


def test_http_api_answers_clearly_on_unknown_ids_and_bad_input(service):
    inbox = support_inbox(service)
    for path in ("/api/inboxes/nope", "/api/inboxes/nope/conversations", "/api/conversations/nope",
                 "/api/messages/nope"):
        status, body = service.get(path)
        assert status == 404 and body["error"]["code"] == "not_found" and "nope" in body["error"]["message"], path
    assert service.post("/api/conversations/nope/close")[0] == 404
    assert service.request("PUT", "/api/inboxes/nope", {"name": "x"})[0] == 404

    base = f"/api/inboxes/{inbox['id']}/conversations"
    status, body = service.get(base + "?view=starred")
    assert status == 400 and "view" in body["error"]["details"]
    for bad in ("limit=0", "limit=abc", "limit=1000"):
        status, body = service.get(f"{base}?{bad}")
        assert status == 400 and "limit" in body["error"]["details"], bad
    for bad in ("not-base64!", "e30", "eyJhdCI6ICJ4In0"):  # garbage, {}, {"at": "x"}
        status, body = service.get(f"{base}?cursor={bad}")
        assert status == 400 and body["error"]["message"] == "invalid cursor", bad

    status, body = service.post("/api/inboxes", {"name": "Sales", "channels": []})
    assert status == 400 and "channels" in body["error"]["details"]
    status, body = service.post("/api/inboxes", {"name": "Sales", "channels": [{"address": "not an address"}]})
    assert status == 400 and "not an address" in body["error"]["message"]
    status, body = service.post("/api/inboxes", {"name": "Copycat", "channels": [{"address": "SUPPORT@mailroom.test"}]})
    assert status == 409 and SUPPORT in body["error"]["message"]


def test_mail_for_a_channel_not_yet_known_is_retried_until_the_inbox_exists(service):
    data = message_received(channel="sales@mailroom.test", subject="Quote please")
    with EventSubscriber(service.amqp_uri, [("conversations.events", "#")]) as events:
        publish(service, data)
        service.eventually(lambda: queue_depth(service.amqp_uri, RECEIVED_QUEUE + ".retry.1")
                           + queue_depth(service.amqp_uri, RECEIVED_QUEUE + ".retry.2") == 1)
        status, sales = service.post("/api/inboxes", {
            "name": "Sales", "channels": [{"address": "Sales@Mailroom.test", "name": "Sales team"}],
            "members": [{"user_id": "u-2", "email": "rep@mailroom.test"}]})
        assert status == 201 and sales["primary_address"] == "sales@mailroom.test"
        announced = events.wait_for("inbox_updated", lambda e: e["data"]["inbox_id"] == sales["id"])[0]
        conversation = conversation_of(service, events, data)
    assert announced["data"]["channel_addresses"] == ["sales@mailroom.test"]
    assert announced["data"]["member_emails"] == ["rep@mailroom.test"]
    assert conversation["inbox_id"] == sales["id"] and conversation["subject"] == "Quote please"
    assert queue_depth(service.amqp_uri, RECEIVED_QUEUE + ".dlq") == 0
    assert [i["id"] for i in view(service, sales["id"])["items"]] == [conversation["id"]]
    assert view(service, support_inbox(service)["id"])["items"] == []


def test_migrations_match_the_models(make_database):
    from conversations.models import Base

    url = make_database("conversations")
    upgrade("conversations", Path(CONVERSATIONS.migrations), url)
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_a_stranger_citing_a_message_id_gets_a_linked_conversation_a_colleague_joins(service):
    inbox = support_inbox(service)
    with EventSubscriber(service.amqp_uri, [("conversations.events", "#")]) as events:
        first = publish(service, message_received(sender="ada@customer.example"))
        conversation = conversation_of(service, events, first)
        colleague = publish(service, message_received(sender="carol@customer.example", name="Carol",
                                                      in_reply_to=[first["message_id"]], minutes=1))
        assert conversation_of(service, events, colleague)["id"] == conversation["id"]
        stranger = publish(service, message_received(sender="mallory@gmail.com", name="Mallory",
                                                     reply_token=conversation["reply_token"],
                                                     in_reply_to=[first["message_id"]], minutes=2))
        linked = conversation_of(service, events, stranger)
        created = events.wait_for("conversation_created", count=2)
    assert linked["id"] != conversation["id"] and linked["related_conversation_id"] == conversation["id"]
    assert linked["contact"]["email"] == "mallory@gmail.com"
    assert [c["data"]["related_conversation_id"] for c in created] == [None, conversation["id"]]
    assert service.get(f"/api/conversations/{conversation['id']}")[1]["message_count"] == 2
    items = {i["id"]: i for i in view(service, inbox["id"])["items"]}
    assert items[linked["id"]]["related_conversation_id"] == conversation["id"]


def test_a_reply_processed_before_its_parent_ends_up_in_its_conversation(service):
    """Concurrent SMTP: the reply's message_received is handled before its parent's."""
    inbox = support_inbox(service)
    parent = message_received(message_id="parent-42@example.com", subject="Where is my order?")
    reply = message_received(message_id="reply-42@example.com", subject="Re: Where is my order?",
                             in_reply_to=["<parent-42@example.com>"], references=["<parent-42@example.com>"],
                             minutes=1, text="any news?")
    with EventSubscriber(service.amqp_uri, [("conversations.events", "#")]) as events:
        publish(service, reply)
        started = conversation_of(service, events, reply)  # handled: the parent is not there yet
        publish(service, parent)
        adopted = conversation_of(service, events, parent)
        later = publish(service, message_received(in_reply_to=["parent-42@example.com"], minutes=2))
        assert conversation_of(service, events, later)["id"] == started["id"]
        created = events.of_type("conversation_created")
        added = events.of_type("message_added")
    assert adopted["id"] == started["id"] and adopted["message_count"] == 2
    assert [m["rfc_message_id"] for m in adopted["messages"]] == ["parent-42@example.com", "reply-42@example.com"]
    assert [c["data"]["conversation_id"] for c in created] == [started["id"]]  # none for the parent
    assert [a["data"]["conversation_id"] for a in added] == [started["id"]] * 3
    [item] = view(service, inbox["id"])["items"]
    assert item["id"] == started["id"] and item["message_count"] == 3


@pytest.fixture
def support_database(make_database):
    """A migrated conversations database on PostgreSQL with the Support inbox, and the service's
    outbox, for the handlers called directly from two transactions at once."""
    from conversations import handlers
    from conversations.service import ConversationsService
    from mailroom_shared.db import Database

    url = make_database("conversations")
    upgrade("conversations", Path(CONVERSATIONS.migrations), url)
    database = Database(url)
    outbox = ConversationsService.outbox
    try:
        with database.transaction() as session:
            handlers.create_inbox(session, outbox, {"name": "Support", "channels": [{"address": SUPPORT}]})
        yield database, outbox
    finally:
        database.dispose()


def test_a_contact_merge_waits_for_a_message_in_progress_without_a_deadlock(support_database):
    """A reply is being stored (its conversation's row locked) when contacts' merge of its sender
    arrives: the merge waits for the message's turn (an advisory lock taken before any row lock),
    not for the row; the message then settles its contacts and commits, and the merge moves the
    conversation to the survivor. Had the message taken its turn after locking the row (as it
    once did), the two would each wait for the other until PostgreSQL aborted one."""
    import threading

    from sqlalchemy import text

    from conversations import contact_corrections, handlers
    from conversations.models import Conversation
    from conversations.settings import Settings

    database, outbox = support_database
    with database.transaction() as session:
        contact_corrections.learn_contact(session, {"contact_id": "c-merged", "emails": ["ada@example.com"]})
        first = handlers.receive_message(session, outbox, message_received(message_id="m1@example.com"),
                                         Settings())
    conversation_id = first.conversation.id
    reply = message_received(message_id="m2@example.com", in_reply_to=["m1@example.com"], minutes=1)
    merged, failures = threading.Event(), []

    def merge():
        try:
            with database.transaction() as other:
                other.execute(text("SET application_name = 'the-merge'"))
                contact_corrections.follow_merge(other, {"survivor_id": "c-survivor", "merged_id": "c-merged",
                                                         "emails": ["ada@example.com"]})
            merged.set()
        except Exception as exc:  # noqa: BLE001 - the test reports it
            failures.append(exc)

    with database.transaction() as session:  # as the service handles message_received
        received = handlers.receive_message(session, outbox, reply, Settings())
        assert received.conversation.id == conversation_id
        merging = threading.Thread(target=merge)
        merging.start()
        assert not merged.wait(0.5), "the merge did not wait for the message in progress"
        waits = session.execute(text("SELECT wait_event_type, wait_event FROM pg_stat_activity "
                                     "WHERE application_name = 'the-merge'")).all()
        assert waits == [("Lock", "advisory")]
        contact_corrections.settle_contacts(session, reply, turn_taken=True)
    merging.join(10)
    assert failures == [] and merged.is_set()
    with database.transaction() as session:
        assert session.get(Conversation, conversation_id).contact_id == "c-survivor"


def test_a_reply_and_its_parent_handled_at_the_same_moment_meet_on_postgresql(support_database):
    """Two consumers (replicas) threading a reply and its parent at once: neither transaction can
    miss the other — the second waits for the first (advisory locks on the Message-IDs) and then
    joins or adopts it. Either order."""
    import threading

    from conversations import handlers
    from conversations.models import Conversation, Message
    from conversations.settings import Settings

    database, outbox = support_database
    for first_is_reply in (True, False):
        n = int(first_is_reply)
        parent = message_received(message_id=f"p{n}@example.com")
        reply = message_received(message_id=f"r{n}@example.com", in_reply_to=[f"p{n}@example.com"], minutes=1)
        first, second = (reply, parent) if first_is_reply else (parent, reply)
        done = threading.Event()

        def handle_second(data=second, finished=done):
            with database.transaction() as other:
                handlers.receive_message(other, outbox, data, Settings())
            finished.set()

        with database.transaction() as session:
            handlers.receive_message(session, outbox, first, Settings())
            waiting = threading.Thread(target=handle_second)
            waiting.start()
            assert not done.wait(0.5), "the second message did not wait for the first to commit"
        waiting.join(10)
        assert done.is_set()
        with database.transaction() as session:
            ids = {f"p{n}@example.com", f"r{n}@example.com"}
            conversations = {m.conversation_id for m in session.query(Message).filter(
                Message.rfc_message_id.in_(ids))}
            assert len(conversations) == 1, first_is_reply
            assert session.get(Conversation, conversations.pop()).message_count == 2


def test_an_inbound_message_is_stored_in_one_statement_per_row_on_postgres(support_database):
    """What each inbound message costs PostgreSQL (issue #16): a new sender's first message is
    threaded in four reads and stored in three INSERTs (its conversation takes the contact that
    contacts announced inside its own INSERT); a reply counts itself in its conversation with one
    UPDATE, which also locks the row (no SELECT … FOR UPDATE first)."""
    from sqlalchemy import event

    from conversations import contact_corrections, handlers
    from conversations.models import Conversation
    from conversations.settings import Settings

    database, outbox = support_database
    with database.transaction() as session:
        contact_corrections.learn_contact(session, {"contact_id": "c-ada", "emails": ["ada@example.com"]})
    statements = []
    event.listen(database.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: statements.append(" ".join(statement.split())))
    with database.transaction() as session:
        first = handlers.receive_message(session, outbox, message_received(message_id="m1@example.com"), Settings())
    assert [s[:40] for s in statements if not s.startswith(("BEGIN", "COMMIT"))] == [
        "SELECT channels.inbox_id FROM channels W",  # the inbox
        "SELECT CASE WHEN turn THEN pg_advisory_x",  # its turn with relatives and contact merges
        "SELECT messages.id FROM messages WHERE m",  # its Message-ID stored already?
        "SELECT conversations.id, conversations.i",  # conversations waiting for it as their parent
        "INSERT INTO conversations (id, inbox_id,",
        "INSERT INTO messages (id, conversation_i",
        "INSERT INTO outbox (event_id, event_type",  # conversation_created and message_added
    ]
    statements.clear()
    with database.transaction() as session:
        reply = handlers.receive_message(session, outbox, message_received(
            message_id="m2@example.com", in_reply_to=["m1@example.com"], minutes=5, text="Any news?"), Settings())
    writes = [s[:22] for s in statements if not s.startswith(("SELECT", "BEGIN", "COMMIT"))]
    assert writes == ["UPDATE conversations S", "INSERT INTO messages (", "INSERT INTO outbox (ev"]
    assert not [s for s in statements if "FOR UPDATE" in s]
    with database.transaction() as session:
        stored = session.get(Conversation, first.conversation.id)
        assert reply.conversation.id == stored.id and reply.placement.action == "join"
        assert (stored.contact_id, stored.message_count, stored.snippet) == ("c-ada", 2, "Any news?")
