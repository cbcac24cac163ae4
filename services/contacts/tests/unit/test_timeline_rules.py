"""What a timeline entry shows, whom a sent email is logged for, and whose inbox mail a caller
may see: plain rules, no IO."""

from contacts.domain.senders import display_name
from contacts.domain.timeline import (
    entry_snippet,
    outbound_link_id,
    sender_of,
    sent_to,
    stored_message_of,
    timeline_attachments,
)
from contacts.domain.visibility import may_see_inbox
from mailroom_shared.text import SNIPPET_CHARS, snippet


def test_a_timeline_entry_keeps_only_the_attachment_fields_it_shows():
    attachment = {"filename": "a.pdf", "content_type": "application/pdf", "size": 3, "sha256": "ab",
                  "url": "/x", "disposition": "attachment", "content_id": None}
    assert timeline_attachments([attachment, {"filename": "b.txt"}]) == [
        {"filename": "a.pdf", "content_type": "application/pdf", "size": 3, "sha256": "ab", "url": "/x"},
        {"filename": "b.txt", "content_type": None, "size": None, "sha256": None, "url": None}]
    assert timeline_attachments(None) == []


def test_a_sent_email_is_logged_once_for_each_recipient_but_never_for_us():
    email = {"from_": {"email": "Support@Team.example"},
             "to": [{"name": " Ada ", "email": "ADA@example.com"}, {"email": "support@team.example"}],
             "cc": [{"name": "Ada again", "email": "ada@example.com"}, {"email": "sales@team.example"},
                    {"email": "not an address"}],
             "bcc": [{"name": "", "email": "bob@example.com"}]}
    sender = sender_of(email)
    assert sender == "support@team.example"
    assert list(sent_to(email, sender, {"sales@team.example"})) == [("ada@example.com", "Ada"),
                                                                   ("bob@example.com", None)]
    assert list(sent_to({}, None, set())) == []


def test_the_link_of_a_sent_email_to_its_conversation():
    assert outbound_link_id("e-1") == "outbound:e-1"


def test_names_are_trimmed_and_blank_is_none():
    assert display_name("  Ada Lovelace ") == "Ada Lovelace"
    assert display_name("  ") is None and display_name(None) is None


def test_inbox_mail_is_visible_to_everyone_or_to_members_by_user_or_team():
    assert may_see_inbox("everyone", [], [], user_id="u", caller_team_ids=set())
    assert may_see_inbox("specific", ["u"], [], user_id="u", caller_team_ids=set())
    assert may_see_inbox("specific", None, ["gold"], user_id="u", caller_team_ids={"gold", "red"})
    assert not may_see_inbox("specific", ["v"], ["gold"], user_id="u", caller_team_ids={"red"})
    assert not may_see_inbox("specific", None, None, user_id="u", caller_team_ids=set())


def test_only_an_inbound_messages_attachment_links_need_a_download_token_from_ingest():
    assert stored_message_of("in", "intake-1") == "intake-1"
    assert stored_message_of("in", None) is None
    assert stored_message_of("out", outbound_link_id("email-1")) is None


def test_an_entrys_snippet_is_the_shared_snippet_read_from_the_texts_beginning_only():
    word = "abcd"  # five characters with its space: 40 words fill the snippet exactly
    texts = [" ".join([word] * n) for n in (1, 39, 40, 41, 5000)]
    texts += ["x" * (SNIPPET_CHARS + 1), "x" * SNIPPET_CHARS, "  \n\t lead " + "a\u2003b\x1c c\u00a0d " * 300,
              ("word  " * 39) + "w" + "\n" * 50 + "tail", "ab " * 66 + "abc", "ab " * 66 + "a b"]
    for text in texts:
        assert entry_snippet(text, None) == snippet(text), text[:60]
    assert entry_snippet(" \n ", "<p>Hello <b>there</b></p>") == "Hello there"
    assert entry_snippet(None, None) == ""
