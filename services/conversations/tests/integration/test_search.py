"""Server-side search (`?q=` on both conversation lists, domain/search.py) through the real
service on PostgreSQL (trigram indexes): by subject, sender address, sender name and message
text, case-insensitive, every character literal, within the view and the inboxes the caller may
view, paginated by cursor; hostile and oversized queries answered, never a 500."""

import datetime as dt
import urllib.parse
import uuid

import pytest

from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import CONVERSATIONS
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import auth

pytestmark = pytest.mark.integration

MEMBER = auth("finder-a", email="finder-a@mailroom.test")  # member of Sales only
ADMIN = auth("acc-admin", roles=["account_access"])  # views every inbox
SALES, LEGAL = "sales@mailroom.test", "legal@mailroom.test"
T0 = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


def message_received(channel, *, subject, text="Hello", name="Ada Lovelace", email="ada@example.com", minutes=0):
    intake_id = str(uuid.uuid4())
    return {
        "intake_id": intake_id, "channel_address": channel, "via": "smtp", "message_id": f"{uuid.uuid4()}@example.com",
        "subject": subject, "sender": {"name": name, "email": email}, "attributed_to": {"name": name, "email": email},
        "to": [{"name": None, "email": channel}], "cc": [], "reply_to": [], "in_reply_to": [], "references": [],
        "reply_token": None, "text": text, "html": None, "size": 10, "raw_url": f"/api/ingest/messages/{intake_id}/raw",
        "attachments": [], "received_at": (T0 + dt.timedelta(minutes=minutes)).isoformat(),
        "flags": {"auto_submitted": False, "bounce": False, "spam": False, "loop": False, "reasons": []},
    }


@pytest.fixture
def world(stack_factory, amqp_uri):
    stack = stack_factory([CONVERSATIONS], extra_env={"CONVERSATIONS_INBOXES_FILE": ""})
    ids = {}
    for name, address, member in (("Sales", SALES, "finder-a"), ("Legal", LEGAL, "lawyer-z")):
        status, inbox = stack.post("/api/inboxes", {
            "name": name, "channels": [{"address": address}],
            "members": [{"user_id": member, "email": f"{member}@mailroom.test"}],
            "access": {"visibility": "specific", "teams": []}})
        assert status == 201, inbox
        ids[address] = inbox["id"]
    with EventSubscriber(amqp_uri, [("conversations.events", "message_added")]) as events:
        yield stack, ids, events


def receive(stack, events, channel, **kwargs):
    data = message_received(channel, **kwargs)
    publish_event(stack.amqp_uri, "message_received", data["intake_id"], data)
    [added] = events.wait_for("message_added", lambda e: e["data"]["intake_id"] == data["intake_id"])
    return added["data"]["conversation_id"]


def search(stack, path, q, headers=MEMBER, **params):
    query = urllib.parse.urlencode({"q": q, **params})
    return stack.get(f"{path}?{query}", headers=headers)


def found(stack, path, q, headers=MEMBER, **params):
    status, page = search(stack, path, q, headers, **params)
    assert status == 200, (q, page)
    return {item["id"] for item in page["items"]}


def test_search_by_subject_sender_and_text_within_the_inboxes_one_may_view(world):
    stack, ids, events = world
    refund = receive(stack, events, SALES, subject="Refund for order 4242")
    grace = receive(stack, events, SALES, subject="Hello there", name="Grace Hopper", email="grace@navy.example",
                    minutes=1)
    body = receive(stack, events, SALES, subject="A question", text="The parcel arrived damaged: Crème brûlée box",
                   minutes=2)
    percent = receive(stack, events, SALES, subject="Discount", text="You promised 100% off_the price", minutes=3)
    secret = receive(stack, events, LEGAL, subject="Refund lawsuit", text="confidential", minutes=4)
    sales = f"/api/inboxes/{ids[SALES]}/conversations"

    assert found(stack, sales, "refund", view="all") == {refund}
    assert found(stack, sales, "ORDER 4242", view="all") == {refund}  # case-insensitive
    assert found(stack, sales, "grace@navy", view="all") == {grace}  # sender address
    assert found(stack, sales, "hopper", view="all") == {grace}  # sender name
    assert found(stack, sales, "arrived DAMAGED", view="all") == {body}  # message text
    assert found(stack, sales, "brûlée", view="all") == {body}
    assert found(stack, sales, "nothing says this", view="all") == set()
    # across inboxes: only those the caller may view; the admin views both
    assert found(stack, "/api/conversations", "refund", view="all") == {refund}
    assert found(stack, "/api/conversations", "refund", ADMIN, view="all") == {refund, secret}
    assert search(stack, f"/api/inboxes/{ids[LEGAL]}/conversations", "refund")[0] == 404
    assert found(stack, "/api/conversations", "confidential", view="all") == set()
    # the view still applies; every item says whether it is unread
    assert found(stack, sales, "refund", view="closed") == set()
    status, page = search(stack, sales, "refund", view="open")
    assert status == 200 and [(i["id"], i["unread"]) for i in page["items"]] == [(refund, True)]
    # blank: no search at all
    assert found(stack, sales, "   ", view="all") == {refund, grace, body, percent}

    # hostile text is looked for literally: LIKE wildcards, quotes, backslashes, SQL
    assert found(stack, sales, "100%", view="all") == {percent}
    assert found(stack, sales, "%", view="all") == {percent}
    assert found(stack, sales, "off_the", view="all") == {percent}
    assert found(stack, sales, "_", view="all") == {percent}
    assert found(stack, sales, "o_f", view="all") == set()  # "_" is not "any character"
    assert found(stack, sales, "100%%", view="all") == set()
    for hostile in ("\\", "\\%", "'", "\"", "'; DROP TABLE conversations; --", "%' OR '1'='1", "[a-z]*", "\u202e"):
        assert found(stack, sales, hostile, view="all") == set(), hostile
    assert found(stack, sales, "refund", view="all") == {refund}  # nothing was harmed


def test_query_length_and_nul(world):
    stack, ids, events = world
    receive(stack, events, SALES, subject="x" * 150)
    sales = f"/api/inboxes/{ids[SALES]}/conversations"
    assert len(found(stack, sales, "x" * 150)) == 1
    assert found(stack, sales, "é" * 200) == set()  # 200 characters (400 bytes): allowed
    for path in (sales, "/api/conversations"):
        status, answer = search(stack, path, "é" * 201)
        assert status == 422 and answer["error"]["code"] == "query_too_long", answer
        status, answer = search(stack, path, "y" * 4000)
        assert status == 422, answer
        assert search(stack, path, "y" * 100_000)[0] == 414  # beyond the HTTP server's request line limit
        status, answer = search(stack, path, "a\x00b")
        assert status == 400, answer  # PostgreSQL cannot hold NUL: refused before any query


def test_cursor_pages_keep_the_search(world):
    stack, ids, events = world
    invoices = [receive(stack, events, SALES, subject=f"Invoice {n}", minutes=n) for n in range(5)]
    receive(stack, events, SALES, subject="Unrelated", minutes=10)
    for path in (f"/api/inboxes/{ids[SALES]}/conversations", "/api/conversations"):
        seen, cursor = [], None
        while True:
            params = {"limit": 2, "view": "open", **({"cursor": cursor} if cursor else {})}
            status, page = search(stack, path, "invoice", **params)
            assert status == 200, page
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == list(reversed(invoices)), path  # newest first, each once
