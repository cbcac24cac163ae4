"""What a chat reply may hold and what a connector's answer means (domain/chat.py)."""

import json

import pytest

from outbound.domain import chat
from outbound.domain.errors import InvalidEmail


def test_a_chat_reply_is_text_and_email_fields_are_refused_by_name():
    assert chat.chat_text({"text": "  hi  "}) == "hi"
    assert chat.chat_text({"html": "<p>Hello <b>there</b></p>"}).startswith("Hello")
    for request, field in (({"text": "x", "subject": "s"}, "subject"), ({"text": "x", "cc": ["a@b.c"]}, "cc"),
                           ({"text": "x", "attachments": [{}]}, "attachments"), ({"text": " "}, "text"),
                           ({"text": "x", "reply_all": True}, "reply_all"),
                           ({"text": "x" * (chat.MAX_CHAT_TEXT_CHARS + 1)}, "text")):
        with pytest.raises(InvalidEmail) as caught:
            chat.chat_text(request)
        assert caught.value.field == field


def test_the_payload_is_json_the_connector_can_read():
    body = json.loads(chat.payload("m1", "c1", "ch1", "whatsapp", "+4915112345678", 'a "b" <c>', None, "t"))
    assert body == {"type": "message.created", "message_id": "m1", "channel_id": "ch1", "kind": "whatsapp",
                    "thread_id": "+4915112345678", "conversation_id": "c1", "text": 'a "b" <c>',
                    "author": {"name": None}, "created_at": "t"}
    assert chat.identity("messenger", "27") == {"kind": "messenger", "value": "27"}


@pytest.mark.parametrize(("status", "error", "state"), [
    (200, None, "sent"), (204, None, "sent"), (None, "timed out after 15 s", "retry"),
    (None, "ConnectionRefusedError: …", "retry"), (429, "HTTP 429", "retry"), (500, "HTTP 500", "retry"),
    (503, "HTTP 503", "retry"), (408, "HTTP 408", "retry"), (400, "HTTP 400", "failed"), (404, "HTTP 404", "failed"),
    (410, "HTTP 410", "failed"), (None, "refused: 10.0.0.1 is private", "failed"), (301, "HTTP 301", "failed"),
])
def test_what_a_connector_answer_means(status, error, state):
    assert chat.outcome(status, error).state == state


def test_a_429_retry_after_is_kept():
    assert chat.outcome(429, "HTTP 429", 30.0).retry_after == 30.0


def test_a_reply_is_never_posted_to_a_private_address_unless_allowed():
    from mailroom_shared.signed_webhooks import new_secret
    from outbound import chat_replies
    from outbound.settings import Settings

    claimed = chat_replies.ClaimedChat("reply-1", 1, "http://127.0.0.1:9/hook", new_secret(), "{}")
    refused = chat_replies.deliver(claimed, Settings(allow_private_connector_targets=False))
    assert refused.state == "failed" and "loopback" in refused.reason
    # allowed: it is tried (nothing listens on port 9: no answer, so retried later)
    assert chat_replies.deliver(claimed, Settings(allow_private_connector_targets=True)).state == "retry"
