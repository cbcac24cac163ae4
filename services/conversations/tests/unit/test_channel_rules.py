"""The rules of chat and form channels (domain/channels.py): types and kinds, handles, what a form
submission reads as, and the bounds on attachments."""

import base64

import pytest

from conversations.domain import channels
from conversations.domain.channels import InvalidConnectorRequest, LinkedFile


def test_a_chat_channel_needs_a_kind_and_a_url_and_a_form_neither():
    assert channels.checked_type("chat", "whatsapp", "https://c.example/hook") == ("chat", "whatsapp")
    assert channels.checked_type("form", None, None) == ("form", None)
    for args in (("chat", None, "https://c.example"), ("chat", "telegram", "https://c.example"),
                 ("chat", "messenger", None), ("form", "whatsapp", None), ("email", None, None)):
        with pytest.raises(InvalidConnectorRequest):
            channels.checked_type(*args)


def test_handles_are_normalised_by_the_channel_kind():
    assert channels.normalised_handle("whatsapp", "+44 (20) 7946-0958", "thread_id") == "+442079460958"
    assert channels.normalised_handle("whatsapp", "4915112345678", "thread_id") == "+4915112345678"
    assert channels.normalised_handle("messenger", " 2712345678 ", "thread_id") == "2712345678"
    assert channels.normalised_handle("livechat", "visitor-7@site", "thread_id") == "visitor-7@site"
    for kind, raw in (("whatsapp", "020 7946 0958"), ("whatsapp", "+1 555"), ("messenger", "psid-abc"),
                      ("livechat", "a b"), ("livechat", "<script>"), ("livechat", "x" * 201)):
        with pytest.raises(InvalidConnectorRequest) as caught:
            channels.normalised_handle(kind, raw, "sender.handle")
        assert caught.value.field == "sender.handle"


def test_a_message_key_is_stable_per_channel_and_never_an_email_message_id():
    key = channels.message_key("chan-1", "wamid.X")
    assert key == channels.message_key("chan-1", "wamid.X") != channels.message_key("chan-2", "wamid.X")
    assert key.endswith("@chan-1.channel.mailroom.invalid") and len(key) < 998


def test_form_fields_read_as_labelled_text_in_order_and_markup_stays_text():
    text = channels.form_text({"Name": "Grace", "Note": "<b>hi</b>\nthere", "Tags": ["a", 2], "Empty": None,
                               "Agree": True})
    assert text == "Name: Grace\nNote:\n<b>hi</b>\nthere\nTags: a, 2\nEmpty: \nAgree: True"
    for fields in ({"x": {"nested": 1}}, {"": "v"}, {"x": "v" * 10_001}, {f"f{n}": n for n in range(101)}):
        with pytest.raises(InvalidConnectorRequest):
            channels.form_text(fields)


def test_attachments_are_bounded_decoded_and_links_are_never_fetched():
    inline = {"filename": "a/../b.png", "content_type": "image/png",
              "content_base64": base64.b64encode(b"png").decode()}
    linked = {"filename": None, "url": "https://cdn.example/f.pdf", "size": 10}
    found = channels.attachments([inline, linked])
    assert found[0].data == b"png" and found[0].filename == "a_.._b.png"
    assert found[1] == LinkedFile("attachment-2", "application/octet-stream", 10, "https://cdn.example/f.pdf")
    big = base64.b64encode(b"x" * (channels.MAX_INLINE_ATTACHMENT_BYTES + 1)).decode()
    for items in ([{"content_base64": big}], [{"content_base64": "not base64!"}], [{"url": "file:///etc/passwd"}],
                  [{}], [{"url": "https://x.example/a", "content_base64": "YQ=="}],
                  [{"url": "https://x.example/a"}] * (channels.MAX_ATTACHMENTS + 1)):
        with pytest.raises(InvalidConnectorRequest):
            channels.attachments(items)


def test_a_chat_is_named_after_its_first_words():
    assert channels.chat_subject("  Where\nis   my order? ", "Ada", "+44") == "Where is my order?"
    assert channels.chat_subject("", "Ada", "+44") == "Chat with Ada"
    assert len(channels.chat_subject("w " * 100, None, "+44")) == channels.CHAT_SUBJECT_CHARS
