"""Slack against real parts: a notifier process (its own PostgreSQL database and RabbitMQ vhost)
posting to a local stand-in for Slack's Web API (mailroom_testing.fake_slack, SLACK_API_URL),
events published into the vhost as their producers would, and signed Events API callbacks."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from cryptography.fernet import Fernet

from mailroom_testing.fake_slack import FakeSlack, signed_event
from mailroom_testing.publishing import publish_event
from mailroom_testing.specs import NOTIFIER
from mailroom_testing.tokens import auth

pytestmark = pytest.mark.integration

CHANNEL = "C0SUPPORT1"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # noqa: S105 - test-only
BOT_TOKEN = "xoxb-111-222-test-token"  # noqa: S105 - test-only
INBOX = "inbox-1"


@pytest.fixture
def slack():
    fake = FakeSlack(token=BOT_TOKEN)
    yield fake
    fake.close()


def notifier_env(slack, **more):
    return {"MAILROOM_BLOCKING_DETECTION_SECONDS": "5",  # a loaded machine: start-up may hold the loop 1 s
            "NOTIFIER_SECRET_KEY": Fernet.generate_key().decode(), "SLACK_API_URL": slack.url,
            "NOTIFIER_POLL_SECONDS": "0.2", "NOTIFIER_CONVERSATION_URL_TEMPLATE":
            "https://inbox.example.com/conversations/{conversation_id}", **more}


@pytest.fixture
def stack(stack_factory, slack):
    return stack_factory([NOTIFIER], extra_env=notifier_env(slack))


def connect(stack, inbox_id=INBOX, channel=CHANNEL, **more):
    status, body = stack.post("/api/slack/connections", {
        "inbox_id": inbox_id, "channel_id": channel, "bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET,
        **more})
    assert status == 201, body
    return body


def conversation_created(stack, conversation_id, inbox_id=INBOX, event_id=None, subject="Where is my order?"):
    return publish_event(stack.amqp_uri, "conversation_created", conversation_id, {
        "conversation_id": conversation_id, "inbox_id": inbox_id, "subject": subject, "status": "open",
        "spam": False, "contact_email": "ada@example.com", "contact_name": "Ada <script>"}, event_id=event_id)


def message_added(stack, conversation_id, direction="in"):
    return publish_event(stack.amqp_uri, "message_added", conversation_id, {
        "conversation_id": conversation_id, "inbox_id": INBOX, "message_id": str(uuid.uuid4()),
        "rfc_message_id": f"{uuid.uuid4()}@example.com", "direction": direction, "subject": "Re: order",
        "sender": {"name": "Ada", "email": "ada@example.com"}, "spam": False})


def assigned(stack, conversation_id):
    return publish_event(stack.amqp_uri, "conversation_assigned", conversation_id, {
        "conversation_id": conversation_id, "inbox_id": INBOX, "assignee_user_id": "agent-1",
        "assigned_by": "agent-2"})


def comment(stack, conversation_id, mentions):
    return publish_event(stack.amqp_uri, "comment_added", conversation_id, {
        "comment_id": str(uuid.uuid4()), "conversation_id": conversation_id, "inbox_id": INBOX,
        "author_user_id": "agent-2", "body": "@agent-1 can you call her?\n<!channel>", "mentions": mentions})


def mine(slack, key=None):
    """Our posts in the channel (each carries its post key in its metadata)."""
    return [m for m in slack.posts(CHANNEL) if (m.get("metadata") or {}).get("event_type") == "mailroom_notification"]


def test_connections_are_super_admins_and_never_show_their_secrets(stack, slack):
    member = auth("agent-1", teams=["t1"])
    body = {"inbox_id": INBOX, "channel_id": CHANNEL, "bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET}
    assert stack.post("/api/slack/connections", body, headers=member)[0] == 403
    assert stack.get("/api/slack/connections", headers=member)[0] == 403
    connection = connect(stack, notifications=["new_conversations", "mentions"], description="#support")
    assert connection["notifications"] == ["new_conversations", "mentions"] and connection["enabled"] is True
    assert stack.post("/api/slack/connections", body)[0] == 409  # the same inbox and channel again
    for bad in ({**body, "channel_id": "not a channel"}, {**body, "notifications": ["everything"]},
                {k: v for k, v in body.items() if k != "bot_token"}, {**body, "bot_token": "x" * 5000}, [1, 2]):
        status, answer = stack.post("/api/slack/connections", bad)
        assert status == 400, (bad, answer)
    cid = connection["id"]
    answers = [stack.get(f"/api/slack/connections/{cid}"), stack.get("/api/slack/connections"),
               stack.get(f"/api/slack/connections?inbox_id={INBOX}"),
               stack.request("PATCH", f"/api/slack/connections/{cid}", {"notifications": ["assignments"]}),
               stack.request("PATCH", f"/api/slack/connections/{cid}", {"bot_token": BOT_TOKEN + "-new"})]
    for status, answer in answers + [(201, connection)]:
        text = json.dumps(answer)
        assert status in (200, 201) and BOT_TOKEN not in text and SIGNING_SECRET not in text
    assert answers[3][1]["notifications"] == ["assignments"] and answers[3][1]["description"] == "#support"
    assert stack.request("PATCH", f"/api/slack/connections/{cid}", {"channel_id": "C0OTHER"})[0] == 400
    log = stack.log("notifier")
    assert BOT_TOKEN not in log and SIGNING_SECRET not in log
    assert stack.request("DELETE", f"/api/slack/connections/{cid}", headers=member)[0] == 403
    assert stack.request("DELETE", f"/api/slack/connections/{cid}")[0] == 204
    assert stack.get(f"/api/slack/connections/{cid}")[0] == 404


def test_a_conversation_gets_one_thread_and_its_notifications_go_into_it(stack, slack):
    connect(stack)
    connect(stack, inbox_id="inbox-2", channel="C0ELSEWHERE")  # another inbox's channel gets nothing of these
    connect(stack, channel="C0ASSIGNONLY", notifications=["assignments"])
    created = conversation_created(stack, "conv-1")
    conversation_created(stack, "conv-1", event_id=created["id"])  # redelivered: posted once
    [root] = stack.eventually(lambda: mine(slack))
    assert root["thread_ts"] is None
    assert "New conversation" in root["text"] and "Where is my order?" in root["text"]
    assert "&lt;script&gt;" in root["text"] and "<script>" not in root["text"]  # user text escaped
    assert "<https://inbox.example.com/conversations/conv-1|open in mailroom>" in root["text"]
    message_added(stack, "conv-1")
    message_added(stack, "conv-1", direction="out")  # our own reply: not announced
    assigned(stack, "conv-1")
    comment(stack, "conv-1", ["agent-1"])
    comment(stack, "conv-1", [])  # mentions nobody: not posted
    stack.eventually(lambda: len(mine(slack)) >= 4)
    marker = conversation_created(stack, "conv-2")  # after everything above: once it is in, they were handled
    stack.eventually(lambda: any(m["thread_ts"] is None and "conv-2" in m["text"] for m in mine(slack)))
    replies = [m["text"] for m in mine(slack) if m["thread_ts"] == root["ts"]]
    assert len(replies) == 3, replies  # consumed from three queues: in any order, all in the thread
    [new] = [r for r in replies if "New message" in r]
    [assignment] = [r for r in replies if "Assigned" in r]
    [mention] = [r for r in replies if "mentioned agent-1" in r]
    assert "Ada (ada@example.com)" in new and "agent-1 by agent-2" in assignment
    assert "&lt;!channel&gt;" in mention and "<!channel>" not in mention  # no @channel ping from user text
    assert len([m for m in mine(slack) if m["thread_ts"] is None]) == 2  # conv-1 and conv-2
    assert slack.posts("C0ELSEWHERE") == []
    [only] = stack.eventually(lambda: slack.posts("C0ASSIGNONLY"))
    assert "Assigned" in only["text"] and only["thread_ts"] is None  # its own thread for conv-1
    assert marker["id"]


def test_a_429_is_waited_out_with_retry_after_and_nothing_is_lost_or_doubled(stack, slack):
    connection = connect(stack)
    slack.rate_limit["chat.postMessage"] = [1]
    conversation_created(stack, "conv-rl")
    [post] = stack.eventually(lambda: mine(slack), timeout=20)
    assert "conv-rl" in post["text"]
    calls = slack.calls_of("chat.postMessage")
    assert len(calls) == 2  # the 429, then the post after Retry-After
    # Slack has the post before the notifier records it as posted: wait for the record, not the call
    def posted_view():
        view = stack.get(f"/api/slack/connections/{connection['id']}")[1]
        return view if view["pending_posts"] == 0 else None

    view = stack.eventually(posted_view)
    assert view["rate_limited_until"] is not None
    assert len(slack.calls_of("chat.postMessage")) == 2  # and nothing posted again meanwhile


def test_a_notifier_killed_mid_post_does_not_post_twice(stack_factory, slack):
    stack = stack_factory([NOTIFIER], extra_env=notifier_env(
        slack, NOTIFIER_DELIVERY_LEASE_SECONDS="5", NOTIFIER_WEBHOOK_TIMEOUT_SECONDS="4"))
    connection = connect(stack)
    slack.hang_posts = 1  # Slack stores the post, and the notifier is killed before it hears back
    conversation_created(stack, "conv-kill")
    stack.eventually(lambda: mine(slack))
    stack.kill_process("notifier")
    stack.restart_process("notifier")
    message_added(stack, "conv-kill")  # waits for the first post: the thread must exist first
    stack.eventually(lambda: stack.get(f"/api/slack/connections/{connection['id']}")[1]["pending_posts"] == 0
                     and len(mine(slack)) >= 2, timeout=30)
    root, reply = mine(slack)
    assert "conv-kill" in root["text"] and root["thread_ts"] is None
    assert reply["thread_ts"] == root["ts"]  # the thread the first post (made before the kill) started
    assert len(slack.calls_of("chat.postMessage")) == 2  # the interrupted one was found, not posted again
    assert slack.calls_of("conversations.history")  # how it was found


def event_callback(event_id, event):
    return {"type": "event_callback", "team_id": "T1", "api_app_id": "A1", "event_id": event_id,
            "event_time": int(time.time()), "event": event}


def post_event(stack, payload, secret=SIGNING_SECRET, timestamp=None, headers=None, body=None):
    raw, signed = signed_event(secret, payload if body is None else body, timestamp)
    return stack.request("POST", "/slack/events", raw=raw, headers={**signed, **(headers or {})})


def test_events_are_verified_answered_and_stored_once(stack, slack):
    connect(stack)
    challenge = {"token": "legacy", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                 "type": "url_verification"}
    assert post_event(stack, challenge) == (200, {"challenge": challenge["challenge"]})
    assert post_event(stack, challenge, secret="another-apps-signing-secret")[0] == 401
    assert post_event(stack, challenge, timestamp=int(time.time()) - 6 * 60)[0] == 401  # outside 5 minutes
    raw, signed = signed_event(SIGNING_SECRET, challenge)
    assert stack.request("POST", "/slack/events", raw=raw + b" ", headers=signed)[0] == 401  # body changed
    assert stack.request("POST", "/slack/events", raw=raw, headers={**signed, "X-Slack-Request-Timestamp": "soon"}
                         )[0] == 401
    assert stack.request("POST", "/slack/events", raw=raw, headers={"Content-Type": "application/json"})[0] == 401
    assert post_event(stack, None, body="{not json")[0] == 400
    assert post_event(stack, None, body="[1, 2]")[0] == 400
    huge = json.dumps({"type": "event_callback", "padding": "x" * (1024 * 1024)})
    assert post_event(stack, None, body=huge)[0] == 413
    event = {"type": "message", "channel": CHANNEL, "user": "U1", "text": "hi", "ts": "1.000001",
             "thread_ts": "0.000001"}
    assert post_event(stack, event_callback("Ev001", event)) == (200, {"ok": True})
    again = post_event(stack, event_callback("Ev001", event), headers={"X-Slack-Retry-Num": "1",
                                                                        "X-Slack-Retry-Reason": "http_timeout"})
    assert again == (200, {"ok": True, "duplicate": True})
    other = post_event(stack, event_callback("Ev002", {**event, "channel": "C0NOTOURS"}))
    assert other == (200, {"ok": True, "ignored": "not a connected channel"})
    assert slack.ephemerals == []  # a thread that is no conversation's: nothing said, nothing done
