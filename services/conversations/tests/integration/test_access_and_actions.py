"""Who may do what, and what each action does: the permission matrix over every read and every
action, each action's event, concurrent assignment, moves and closes that keep history, views."""

import concurrent.futures
import datetime as dt
import json
import time
import uuid

import pytest

from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import CONVERSATIONS
from mailroom_testing.subscriber import EventSubscriber
from mailroom_testing.tokens import NO_AUTH, auth, token

pytestmark = pytest.mark.integration

EVENTS = [("conversations.events", "#")]

# who is calling
MEMBER = auth("agent-a", email="agent-a@mailroom.test")  # an explicit member of the restricted inbox
TEAM_MEMBER = auth("agent-t", email="agent-t@mailroom.test", teams=["team-t"])  # via a team of the inbox
OUTSIDER = auth("agent-x", email="agent-x@mailroom.test", teams=["team-other"])  # no role, no membership
ACCOUNT_ADMIN = auth("acc-admin", roles=["account_access"])
SUPER_ADMIN = auth("root", roles=["super_admin"])
ANONYMOUS = NO_AUTH
CALLERS = {"member": MEMBER, "team member": TEAM_MEMBER, "outsider": OUTSIDER, "account admin": ACCOUNT_ADMIN,
           "super admin": SUPER_ADMIN, "no token": ANONYMOUS}


BASE_TIME = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)


def message_received(*, channel, sender="ada@example.com", name="Ada Customer", subject="Where is my order?",
                     message_id=None, in_reply_to=(), reply_token=None, spam=False, minutes=0):
    intake_id = str(uuid.uuid4())
    return {
        "intake_id": intake_id, "channel_address": channel, "via": "smtp",
        "message_id": message_id or f"{uuid.uuid4()}@example.com", "subject": subject,
        "sender": {"name": name, "email": sender}, "attributed_to": {"name": name, "email": sender},
        "to": [{"name": None, "email": channel}], "cc": [], "reply_to": [], "in_reply_to": list(in_reply_to),
        "references": [], "reply_token": reply_token, "text": "Hello", "html": None, "size": 10,
        "raw_url": f"/api/ingest/messages/{intake_id}/raw", "attachments": [],
        "received_at": (BASE_TIME + dt.timedelta(minutes=minutes)).isoformat(),
        "flags": {"auto_submitted": False, "bounce": False, "spam": spam, "loop": False, "reasons": []},
    }


def publish(stack, data):
    publish_event(stack.amqp_uri, "message_received", data["intake_id"], data)
    return data


@pytest.fixture
def stack(stack_factory):
    return stack_factory([CONVERSATIONS], extra_env={"CONVERSATIONS_INBOXES_FILE": ""})


def make_inbox(stack, name, address, visibility="everyone", members=(), teams=()):
    status, inbox = stack.post("/api/inboxes", {
        "name": name, "channels": [{"address": address}],
        "members": [{"user_id": m, "email": f"{m}@mailroom.test"} for m in members],
        "access": {"visibility": visibility, "teams": list(teams)}})
    assert status == 201, inbox
    return inbox


def conversation_for(stack, events, **kwargs):
    data = publish(stack, message_received(**kwargs))
    [added] = events.wait_for("message_added", lambda e: e["data"]["intake_id"] == data["intake_id"])
    return added["data"]["conversation_id"], added["data"]["message_id"]


def seen_by_everyone(stack):
    """The users of the tests have all called the API once (so conversations knows their teams)."""
    for headers in (MEMBER, TEAM_MEMBER, OUTSIDER, ACCOUNT_ADMIN, SUPER_ADMIN):
        assert stack.get("/api/inboxes", headers=headers)[0] == 200


def test_tokens_are_required_and_verified(stack):
    assert stack.get("/api/inboxes", headers=ANONYMOUS) == (401, {"error": {
        "code": "unauthorized", "message": "sign in: send `Authorization: Bearer <token>`"}})
    expired = {"Authorization": f"Bearer {token('agent-a', seconds=-120)}"}
    assert stack.get("/api/inboxes", headers=expired)[1]["error"]["message"] == "the token has expired"
    forged = {"Authorization": "Bearer " + token("agent-a").rsplit(".", 1)[0] + ".c2lnbmF0dXJl"}
    assert stack.get("/api/inboxes", headers=forged)[0] == 401
    assert stack.get("/api/inboxes", headers={"Authorization": "Basic YWdlbnQ6cHc="})[0] == 401
    # only admins manage inboxes
    body = {"name": "X", "channels": [{"address": "x@mailroom.test"}]}
    status, error = stack.post("/api/inboxes", body, headers=MEMBER)
    assert status == 403 and "account_access or super_admin" in error["error"]["message"]
    assert stack.post("/api/inboxes", body, headers=ACCOUNT_ADMIN)[0] == 201


def test_permission_matrix_over_every_read_and_action(stack):
    restricted = make_inbox(stack, "Billing", "billing@mailroom.test", "specific", members=["agent-a"],
                            teams=["team-t"])
    everyone = make_inbox(stack, "Support", "support@mailroom.test")
    target = make_inbox(stack, "Escalations", "escalations@mailroom.test", "specific",
                        members=["agent-a", "agent-t"])
    seen_by_everyone(stack)
    with EventSubscriber(stack.amqp_uri, EVENTS) as events:
        restricted_id, restricted_message = conversation_for(stack, events, channel="billing@mailroom.test")
        everyone_id, everyone_message = conversation_for(stack, events, channel="support@mailroom.test")

        # --- reads ---------------------------------------------------------------------------
        expected_reads = {
            restricted["id"]: {"member": 200, "team member": 200, "outsider": 404, "account admin": 200,
                               "super admin": 200, "no token": 401},
            everyone["id"]: {"member": 200, "team member": 200, "outsider": 200, "account admin": 200,
                             "super admin": 200, "no token": 401},
        }
        for inbox_id, conversation_id, message_id in ((restricted["id"], restricted_id, restricted_message),
                                                      (everyone["id"], everyone_id, everyone_message)):
            for who, headers in CALLERS.items():
                want = expected_reads[inbox_id][who]
                for template, entity in (("/api/inboxes/{}", inbox_id),
                                         ("/api/inboxes/{}/conversations?view=all", inbox_id),
                                         ("/api/inboxes/{}/views", inbox_id),
                                         ("/api/conversations/{}", conversation_id),
                                         ("/api/messages/{}", message_id)):
                    status, body = stack.get(template.format(entity), headers=headers)
                    assert status == want, (who, template, body)
                    if want == 404:  # exactly the answer for something that does not exist
                        missing = stack.get(template.format("nope"), headers=headers)
                        assert missing == (404, json.loads(json.dumps(body).replace(entity, "nope")))

        # lists show only what one may view, with what one may do
        def inbox_ids(headers):
            return {i["id"]: i["permissions"] for i in stack.get("/api/inboxes", headers=headers)[1]["items"]}

        assert restricted["id"] not in inbox_ids(OUTSIDER) and everyone["id"] in inbox_ids(OUTSIDER)
        assert inbox_ids(ACCOUNT_ADMIN)[restricted["id"]] == {"view": True, "act": False}
        assert inbox_ids(SUPER_ADMIN)[everyone["id"]] == {"view": True, "act": True}
        assert inbox_ids(TEAM_MEMBER)[restricted["id"]] == {"view": True, "act": True}
        across = {c["id"] for c in stack.get("/api/conversations?view=all", headers=OUTSIDER)[1]["items"]}
        assert across == {everyone_id}
        across = {c["id"] for c in stack.get("/api/conversations?view=all", headers=ACCOUNT_ADMIN)[1]["items"]}
        assert across == {everyone_id, restricted_id}
        assert stack.get("/api/conversations/views", headers=OUTSIDER)[1]["all"] == 1
        assert stack.get(f"/api/conversations/{restricted_id}", headers=SUPER_ADMIN)[1]["permissions"] == {
            "view": True, "act": False}

        # --- actions ---------------------------------------------------------------------------
        actions = [  # (name, path, body, event it publishes)
            ("assign", "assign", {"assignee_user_id": "agent-a"}, "conversation_assigned"),
            ("comment", "comments", {"body": "checking with @agent-t"}, "comment_added"),
            ("ticket", "ticket", {"subject": "Refund"}, "ticket_associated"),
            ("close", "close", {"close_ticket": True}, "conversation_closed"),
            ("reopen", "reopen", None, "conversation_reopened"),
            ("spam", "spam", None, "conversation_spam_marked"),
            ("not spam", "not-spam", None, "conversation_spam_marked"),
            ("move", "move", {"inbox_id": target["id"]}, "conversation_moved"),
        ]
        denied = {"outsider": (OUTSIDER, 404), "account admin": (ACCOUNT_ADMIN, 403),
                  "super admin": (SUPER_ADMIN, 403), "no token": (ANONYMOUS, 401)}
        for name, path, body, event in actions:
            prior = {e["id"] for e in events.of_type(event)}
            for who, (headers, want) in denied.items():
                status, answer = stack.post(f"/api/conversations/{restricted_id}/{path}", body, headers=headers)
                assert status == want, (name, who, answer)
                if want == 403:
                    assert "only its members can act" in answer["error"]["message"]
            status, answer = stack.post(f"/api/conversations/{restricted_id}/{path}", body,
                                        headers=MEMBER if name != "comment" else TEAM_MEMBER)
            assert status in (200, 201), (name, answer)
            # events leave in commit order: anything a denied attempt had published would come first
            events.wait_for(event, lambda e: e["id"] not in prior, timeout=10)
            new = [e for e in events.of_type(event) if e["id"] not in prior]
            assert len(new) == 1 and new[0]["data"]["conversation_id"] == restricted_id, (name, new)
        # the moved conversation is in an inbox the team member is an explicit member of
        assert stack.get(f"/api/conversations/{restricted_id}", headers=TEAM_MEMBER)[1]["inbox_id"] == target["id"]

        # in an inbox shared with everyone, everyone signed in acts; admins too (they are members)
        for who in ("outsider", "account admin", "super admin"):
            status, _ = stack.post(f"/api/conversations/{everyone_id}/comments", {"body": f"hi from {who}"},
                                   headers=CALLERS[who])
            assert status == 201, who
        assert stack.post(f"/api/conversations/{everyone_id}/comments", {"body": "x"},
                          headers=ANONYMOUS)[0] == 401

        # moving into an inbox one may only view is refused; into an invisible one: 404
        assert stack.post(f"/api/conversations/{everyone_id}/move", {"inbox_id": target["id"]},
                          headers=SUPER_ADMIN)[0] == 403
        assert stack.post(f"/api/conversations/{everyone_id}/move", {"inbox_id": target["id"]},
                          headers=OUTSIDER)[0] == 404


def test_actions_publish_their_events_and_keep_history(stack):
    billing = make_inbox(stack, "Billing", "billing@mailroom.test", "specific", members=["agent-a", "agent-b"])
    legal = make_inbox(stack, "Legal", "legal@mailroom.test", "specific", members=["agent-a"])
    seen_by_everyone(stack)
    with EventSubscriber(stack.amqp_uri, EVENTS) as events:
        conversation_id, _ = conversation_for(stack, events, channel="billing@mailroom.test",
                                              message_id="m1@example.com")
        assert conversation_for(stack, events, channel="billing@mailroom.test", message_id="m2@example.com",
                                in_reply_to=["m1@example.com"], minutes=1)[0] == conversation_id
        url = f"/api/conversations/{conversation_id}"

        # assign, reassign, unassign (only to members)
        assert stack.post(f"{url}/assign", {"assignee_user_id": "agent-b"}, headers=MEMBER)[0] == 200
        assert stack.post(f"{url}/assign", {"assignee_user_id": "agent-a"}, headers=MEMBER)[1][
            "assignee_user_id"] == "agent-a"
        status, error = stack.post(f"{url}/assign", {"assignee_user_id": "agent-x"}, headers=MEMBER)
        assert status == 400 and "not a member" in error["error"]["message"]
        assert stack.post(f"{url}/assign", {"assignee_user_id": None}, headers=MEMBER)[1]["assignee_user_id"] is None
        assigned = events.wait_for("conversation_assigned", lambda e: e["data"]["assignee_user_id"] is None)
        assert assigned[0]["data"]["previous_assignee_user_id"] == "agent-a"
        assert [e["data"]["assignee_user_id"] for e in events.of_type("conversation_assigned")] == [
            "agent-b", "agent-a", None]

        # comments: internal, with @mentions of members only
        status, comment = stack.post(f"{url}/comments", {"body": "@agent-b can you look? cc @nobody <b>x</b>"},
                                     headers=MEMBER)
        assert status == 201 and comment["mentions"] == ["agent-b"] and comment["author_user_id"] == "agent-a"
        assert stack.post(f"{url}/comments", {"body": "x", "mentions": ["agent-x"]}, headers=MEMBER)[0] == 400
        [added] = events.wait_for("comment_added")
        assert added["data"]["mentions"] == ["agent-b"] and added["data"]["body"].endswith("<b>x</b>")
        assert not events.of_type("message_added")[2:], "a comment is never a message (never emailed)"

        # ticket: create, then close only the conversation, then both
        status, ticket = stack.post(f"{url}/ticket", {}, headers=MEMBER)
        assert status == 200 and ticket["status"] == "open" and ticket["subject"] == "Where is my order?"
        [associated] = events.wait_for("ticket_associated")
        assert associated["data"]["created"] is True and associated["data"]["conversation_id"] == conversation_id
        assert stack.post(f"{url}/close", {}, headers=MEMBER)[1]["status"] == "closed"
        [closed] = events.wait_for("conversation_closed")
        assert closed["data"]["ticket_closed"] is False and closed["data"]["ticket_id"] == ticket["id"]
        assert closed["data"]["closed_by"] == "agent-a"
        assert stack.get(url)[1]["ticket"]["status"] == "open"
        assert stack.post(f"{url}/reopen", None, headers=MEMBER)[1]["status"] == "open"
        events.wait_for("conversation_reopened", lambda e: e["data"]["reason"] == "api")
        assert stack.post(f"{url}/close", {"close_ticket": True}, headers=MEMBER)[1]["status"] == "closed"
        closed = events.wait_for("conversation_closed", lambda e: e["data"]["ticket_closed"])
        [ticket_closed] = events.wait_for("ticket_closed")
        assert ticket_closed["data"] == {"ticket_id": ticket["id"], "conversation_id": conversation_id,
                                         "closed_by": "agent-a"}
        after_close = stack.get(url)[1]
        assert after_close["ticket"]["status"] == "closed" and len(after_close["messages"]) == 2
        assert len(after_close["comments"]) == 1
        stack.post(f"{url}/reopen", None, headers=MEMBER)
        # an existing ticket can be associated with another conversation by who may act on it
        other_id, _ = conversation_for(stack, events, channel="billing@mailroom.test")
        status, same = stack.post(f"/api/conversations/{other_id}/ticket", {"ticket_id": ticket["id"]},
                                  headers=MEMBER)
        assert status == 200 and same["id"] == ticket["id"]
        assert stack.post(f"/api/conversations/{other_id}/ticket", {"ticket_id": "nope"},
                          headers=MEMBER)[0] == 404

        # move: history kept, access rechecked, the assignee (no member of Legal) unassigned
        stack.post(f"{url}/assign", {"assignee_user_id": "agent-b"}, headers=MEMBER)
        assert stack.post(f"{url}/move", {"inbox_id": legal["id"]}, headers=auth("agent-b"))[0] == 404
        status, moved = stack.post(f"{url}/move", {"inbox_id": legal["id"]}, headers=MEMBER)
        assert status == 200 and moved["inbox_id"] == legal["id"] and moved["assignee_user_id"] is None
        [move] = events.wait_for("conversation_moved")
        assert move["data"] == {"conversation_id": conversation_id, "from_inbox_id": billing["id"],
                                "to_inbox_id": legal["id"], "inbox_id": legal["id"], "moved_by": "agent-a",
                                "unassigned": True}
        after_move = stack.get(url)[1]
        assert [m["rfc_message_id"] for m in after_move["messages"]] == ["m1@example.com", "m2@example.com"]
        assert all(m["inbox_id"] == legal["id"] for m in after_move["messages"])
        assert len(after_move["comments"]) == 1 and after_move["ticket"]["id"] == ticket["id"]
        assert after_move["reply_address"].startswith("legal+")  # later replies use the new inbox's address
        assert stack.get(url, headers=auth("agent-b"))[0] == 404  # no member of Legal: no longer visible
        # a customer's reply to the old thread (sent to the old address) follows the conversation
        reply = publish(stack, message_received(channel="billing@mailroom.test", in_reply_to=["m2@example.com"],
                                                minutes=30))
        [landed] = events.wait_for("message_added", lambda e: e["data"]["intake_id"] == reply["intake_id"])
        assert landed["data"]["conversation_id"] == conversation_id and landed["data"]["inbox_id"] == legal["id"]
        token_reply = publish(stack, message_received(channel="billing@mailroom.test",
                                                      reply_token=after_move["reply_token"], minutes=31))
        [landed] = events.wait_for("message_added", lambda e: e["data"]["intake_id"] == token_reply["intake_id"])
        assert landed["data"]["conversation_id"] == conversation_id

        # spam / not spam
        assert stack.post(f"{url}/spam", None, headers=MEMBER)[1]["spam"] is True
        legal_view = f"/api/inboxes/{legal['id']}/conversations?view="
        assert conversation_id not in {c["id"] for c in stack.get(legal_view + "all")[1]["items"]}
        assert stack.post(f"{url}/not-spam", None, headers=MEMBER)[1]["spam"] is False
        marks = events.wait_for("conversation_spam_marked", lambda e: e["data"]["spam"] is False)
        assert marks[0]["data"]["contact_email"] == "ada@example.com"
        assert len(marks[0]["data"]["intake_ids"]) == 4
        assert conversation_id in {c["id"] for c in stack.get(legal_view + "open")[1]["items"]}


def test_not_spam_brings_a_spam_conversation_into_the_inbox(stack):
    inbox = make_inbox(stack, "Support", "support@mailroom.test")
    with EventSubscriber(stack.amqp_uri, EVENTS) as events:
        spam_id, _ = conversation_for(stack, events, channel="support@mailroom.test", spam=True,
                                      sender="held@example.com", name="Held Back")
        assert [c["id"] for c in stack.get(f"/api/inboxes/{inbox['id']}/conversations?view=spam")[1]["items"]] == [
            spam_id]
        assert stack.post(f"/api/conversations/{spam_id}/not-spam", None)[0] == 200
        [mark] = events.wait_for("conversation_spam_marked")
        assert mark["data"]["spam"] is False and mark["data"]["contact_email"] == "held@example.com"
        assert mark["data"]["contact_name"] == "Held Back"
        assert [c["id"] for c in stack.get(f"/api/inboxes/{inbox['id']}/conversations?view=open")[1]["items"]] == [
            spam_id]


def test_concurrent_assignment_has_one_winner(stack):
    make_inbox(stack, "Support", "support@mailroom.test")
    agents = [f"agent-{i}" for i in range(8)]
    for agent in agents:
        assert stack.get("/api/inboxes", headers=auth(agent))[0] == 200
    with EventSubscriber(stack.amqp_uri, EVENTS) as events:
        conversation_id, _ = conversation_for(stack, events, channel="support@mailroom.test")

        def take(agent):  # "assign to me" of a conversation everyone saw unassigned
            return agent, stack.post(f"/api/conversations/{conversation_id}/assign",
                                     {"assignee_user_id": agent, "expected_assignee_user_id": None},
                                     headers=auth(agent))

        with concurrent.futures.ThreadPoolExecutor(len(agents)) as pool:
            results = list(pool.map(take, agents))
        winners = [agent for agent, (status, _) in results if status == 200]
        assert len(winners) == 1, results
        losers = [body for _, (status, body) in results if status != 200]
        assert all(b["error"]["code"] == "conflict" and b["error"]["details"]["assignee_user_id"] == winners[0]
                   for b in losers)
        events.wait_for("conversation_assigned")
        assert stack.get(f"/api/conversations/{conversation_id}")[1]["assignee_user_id"] == winners[0]
        time.sleep(0.5)
        assert len(events.of_type("conversation_assigned")) == 1


def test_each_view_returns_exactly_its_conversations(stack):
    support = make_inbox(stack, "Support", "support@mailroom.test")
    billing = make_inbox(stack, "Billing", "billing@mailroom.test", "specific", members=["agent-a"])
    hidden = make_inbox(stack, "Hidden", "hidden@mailroom.test", "specific", members=["agent-z"])
    seen_by_everyone(stack)
    with EventSubscriber(stack.amqp_uri, EVENTS) as events:
        ids = {}
        for name, channel, minutes, spam in (
                ("open-unassigned", "support", 1, False), ("open-mine", "support", 2, False),
                ("open-theirs", "billing", 3, False), ("closed", "billing", 4, False),
                ("spam", "support", 5, True), ("hidden", "hidden", 6, False)):
            ids[name], _ = conversation_for(stack, events, channel=f"{channel}@mailroom.test", minutes=minutes,
                                            spam=spam, sender=f"{uuid.uuid4().hex[:8]}@example.com")
        stack.post(f"/api/conversations/{ids['open-mine']}/assign", {"assignee_user_id": "agent-a"}, headers=MEMBER)
        stack.post(f"/api/conversations/{ids['open-theirs']}/assign", {"assignee_user_id": "agent-a"},
                   headers=MEMBER)
        stack.post(f"/api/conversations/{ids['open-theirs']}/assign", {"assignee_user_id": "root"},
                   headers=SUPER_ADMIN)  # 403: root only views Billing
        stack.post(f"/api/conversations/{ids['closed']}/close", {}, headers=MEMBER)
        stack.post(f"/api/conversations/{ids['open-unassigned']}/comments", {"body": "n"}, headers=MEMBER)

        def names(path, headers=MEMBER):
            status, page = stack.get(path, headers=headers)
            assert status == 200, page
            by_id = {v: k for k, v in ids.items()}
            return [by_id[c["id"]] for c in page["items"]]

        # across the inboxes agent-a may view (Support: everyone; Billing: member; not Hidden), newest first
        assert names("/api/conversations?view=open") == ["open-theirs", "open-mine", "open-unassigned"]
        assert names("/api/conversations?view=closed") == ["closed"]
        assert names("/api/conversations?view=mine") == ["open-theirs", "open-mine"]
        assert names("/api/conversations?view=unassigned") == ["open-unassigned"]
        assert names("/api/conversations?view=spam") == ["spam"]
        assert names("/api/conversations?view=all") == ["closed", "open-theirs", "open-mine", "open-unassigned"]
        assert names("/api/conversations?view=sent") == []  # nothing sent yet (outbound adds "out" messages)
        counts = {"open": 3, "closed": 1, "mine": 2, "unassigned": 1, "sent": 0, "spam": 1, "all": 4}
        # agent-a has opened none of them: every one is unread for them
        assert stack.get("/api/conversations/views", headers=MEMBER)[1] == {**counts, "unread_counts": counts}
        # per inbox
        assert names(f"/api/inboxes/{support['id']}/conversations?view=all") == ["open-mine", "open-unassigned"]
        assert names(f"/api/inboxes/{billing['id']}/conversations?view=mine") == ["open-theirs"]
        billing_counts = {"open": 1, "closed": 1, "mine": 1, "unassigned": 0, "sent": 0, "spam": 0, "all": 2}
        assert stack.get(f"/api/inboxes/{billing['id']}/views", headers=MEMBER)[1] == {
            **billing_counts, "unread_counts": billing_counts}
        assert stack.get(f"/api/inboxes/{hidden['id']}/views", headers=MEMBER)[0] == 404
        # an admin sees every inbox; "mine" is about the caller
        assert names("/api/conversations?view=all", SUPER_ADMIN) == [
            "hidden", "closed", "open-theirs", "open-mine", "open-unassigned"]
        assert names("/api/conversations?view=mine", SUPER_ADMIN) == []
        # cursor pagination walks the same list
        page1 = stack.get("/api/conversations?view=all&limit=2", headers=SUPER_ADMIN)[1]
        page2 = stack.get(f"/api/conversations?view=all&limit=2&cursor={page1['next_cursor']}",
                          headers=SUPER_ADMIN)[1]
        page3 = stack.get(f"/api/conversations?view=all&limit=2&cursor={page2['next_cursor']}",
                          headers=SUPER_ADMIN)[1]
        assert page3["next_cursor"] is None
        assert [c["id"] for c in page1["items"] + page2["items"] + page3["items"]] == [
            ids[n] for n in ("hidden", "closed", "open-theirs", "open-mine", "open-unassigned")]
