"""Slack rules without I/O: notification texts (user text escaped), what a thread message is,
`note:`, Slack markup to plain text, and the notifications a connection may name."""

import pytest

from notifier.domain import slack


def test_notifications_say_who_what_and_link_and_escape_user_text():
    text = slack.notification("conversation_created", {
        "conversation_id": "c-1", "inbox_id": "i-1", "subject": "<@U123> & <!here>", "contact_email": "a@x.org",
        "contact_name": "Ada"}, "https://app.example/i/{inbox_id}/c/{conversation_id}")
    assert "Ada (a@x.org)" in text and "&lt;@U123&gt; &amp; &lt;!here&gt;" in text
    assert "<https://app.example/i/i-1/c/c-1|open in mailroom>" in text
    assert "`c-1`" in slack.notification("conversation_assigned", {
        "conversation_id": "c-1", "inbox_id": "i-1", "assignee_user_id": None})
    assert "Unassigned" in slack.notification("conversation_assigned", {
        "conversation_id": "c-1", "inbox_id": "i-1", "assignee_user_id": None, "assigned_by": "u-2"})


@pytest.mark.parametrize(("event_type", "data"), [
    ("message_added", {"conversation_id": "c", "inbox_id": "i", "direction": "out", "subject": "s"}),
    ("comment_added", {"conversation_id": "c", "inbox_id": "i", "body": "b", "mentions": []}),
    ("conversation_created", {"conversation_id": "c", "inbox_id": "i", "subject": "s", "spam": True}),
    ("conversation_closed", {"conversation_id": "c", "inbox_id": "i"}),
    ("conversation_created", {"inbox_id": "i", "subject": "s"}),
])
def test_what_is_not_posted(event_type, data):
    assert slack.notification(event_type, data) is None


def test_long_text_is_cut():
    text = slack.notification("comment_added", {"conversation_id": "c", "inbox_id": "i", "author_user_id": "u",
                                                "body": "x" * 10000, "mentions": ["u2"]})
    assert len(text) < slack.MAX_TEXT + 200


def test_a_thread_message_is_a_persons_reply_in_a_thread():
    base = {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "2.0", "thread_ts": "1.0"}
    assert slack.thread_message(base) == slack.ThreadMessage("C1", "U1", "hi", "2.0", "1.0")
    assert slack.thread_message({**base, "subtype": "thread_broadcast"}) is not None
    for other in ({**base, "thread_ts": "2.0"}, {**base, "bot_id": "B1"}, {**base, "subtype": "message_changed"},
                  {k: v for k, v in base.items() if k != "thread_ts"}, {**base, "type": "app_mention"},
                  {**base, "text": ["not", "text"]}, {**base, "user": ""}, "not a dict", None):
        assert slack.thread_message(other) is None


def test_note_prefix_and_plain_text():
    assert slack.parse_note("note: call her back") == "call her back"
    assert slack.parse_note("  NOTE:call") == "call"
    assert slack.parse_note("a note: no") is None and slack.parse_note("notes: no") is None
    assert slack.parse_note("note:") == ""
    assert slack.plain_text("ask <@U123|ada> about &lt;b&gt; &amp; <https://x.example/a|this>") == \
        "ask ada about <b> & https://x.example/a"


def test_notifications_are_checked():
    assert slack.normalise_notifications(["mentions", "new_conversations"]) == ["new_conversations", "mentions"]
    for bad in ([], ["everything"], "mentions", None):
        with pytest.raises(ValueError):
            slack.normalise_notifications(bad)


def test_failed_posts_wait_longer_and_longer_but_are_never_dropped():
    delays = [slack.retry_delay(n) for n in range(1, 12)]
    assert delays == sorted(delays) and delays[0] == 5.0 and delays[-1] == 3600.0
