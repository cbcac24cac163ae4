"""The threading and placement rules (domain/threads.py, domain/placement.py), without IO."""

from conversations.domain.inboxes import inbox_digest
from conversations.domain.placement import ReplyToClosed, place
from conversations.domain.threads import ConversationRef, Incoming, StoredMessageRef, find_thread
from mailroom_shared.text import snippet

INBOX, OTHER_INBOX = "inbox-1", "inbox-2"
A = ConversationRef("conv-a", INBOX, "open", False, "token-a")
B = ConversationRef("conv-b", INBOX, "open", False, "token-b")
C = ConversationRef("conv-c", INBOX, "open", False, "token-c")
ELSEWHERE = ConversationRef("conv-x", OTHER_INBOX, "open", False, "token-x")


def stored(*pairs):
    return {mid: StoredMessageRef(conv.inbox_id, mid, conv) for mid, conv in pairs}


MESSAGES = stored(("a1@example.com", A), ("b1@example.com", B), ("c1@example.com", C),
                  ("x1@example.com", ELSEWHERE))
TOKENS = {c.reply_token: c for c in (A, B, C, ELSEWHERE)}


def incoming(**kwargs):
    return Incoming(inbox_id=kwargs.pop("inbox_id", INBOX), rfc_message_id="new@example.com", **kwargs)


def test_reply_token_beats_in_reply_to_and_references():
    match = find_thread(incoming(reply_token="token-a", in_reply_to=("b1@example.com",),
                                 references=("c1@example.com",)), TOKENS, MESSAGES)
    assert match.conversation == A and match.matched_by == "reply_token"


def test_unknown_token_falls_back_to_headers():
    match = find_thread(incoming(reply_token="forged", in_reply_to=("b1@example.com",)), TOKENS, MESSAGES)
    assert match.conversation == B and match.matched_by == "in_reply_to"


def test_in_reply_to_beats_references():
    match = find_thread(incoming(in_reply_to=("b1@example.com",), references=("c1@example.com",)), TOKENS, MESSAGES)
    assert match.conversation == B


def test_references_are_searched_newest_first():
    # References lists the oldest first: the last known id is the closest ancestor
    match = find_thread(incoming(references=("a1@example.com", "unknown@x", "c1@example.com", "gone@x")),
                        TOKENS, MESSAGES)
    assert match.conversation == C and match.matched_by == "references" and match.key == "c1@example.com"


def test_angle_brackets_and_folding_whitespace_do_not_prevent_a_match():
    match = find_thread(incoming(in_reply_to=("<b1@example.com >",)), TOKENS, MESSAGES)
    assert match.conversation == B


def test_no_match_starts_a_new_conversation():
    message = incoming(in_reply_to=("nobody@x",), references=("nothing@x",))
    assert find_thread(message, TOKENS, MESSAGES) is None
    assert place(message, None, ReplyToClosed.REOPEN).action == "new"


def test_another_inbox_never_matches_by_token_or_header():
    message = incoming(reply_token="token-x", in_reply_to=("x1@example.com",), references=("x1@example.com",))
    assert find_thread(message, TOKENS, MESSAGES) is None
    # the same message for the other inbox does match there
    assert find_thread(incoming(inbox_id=OTHER_INBOX, reply_token="token-x"), TOKENS, MESSAGES).conversation \
        == ELSEWHERE


def test_the_subject_never_threads():
    same_subject = incoming(subject="Re: Where is my order?")
    assert find_thread(same_subject, TOKENS, MESSAGES) is None


def test_reply_to_closed_reopens_or_starts_a_linked_conversation():
    closed = ConversationRef("conv-closed", INBOX, "closed", False, "t")
    match = find_thread(incoming(reply_token="t"), {"t": closed}, {})
    assert place(incoming(), match, ReplyToClosed.REOPEN).action == "reopen"
    linked = place(incoming(), match, ReplyToClosed.NEW)
    assert linked.action == "new" and linked.reopened_from == "conv-closed"


def test_automatic_mail_joins_a_closed_conversation_without_reopening_it():
    closed = ConversationRef("conv-closed", INBOX, "closed", False, "t")
    match = find_thread(incoming(reply_token="t"), {"t": closed}, {})
    for policy in ReplyToClosed:
        placement = place(incoming(automatic=True), match, policy)
        assert placement.action == "join" and placement.conversation == closed


def test_spam_and_clean_mail_never_share_a_conversation():
    spam_message = incoming(spam=True, in_reply_to=("a1@example.com",))
    placement = place(spam_message, find_thread(spam_message, TOKENS, MESSAGES), ReplyToClosed.REOPEN)
    assert placement.action == "new" and placement.related_conversation_id == "conv-a"

    spam_conversation = ConversationRef("conv-s", INBOX, "open", True, "s")
    clean = incoming(reply_token="s")
    placement = place(clean, find_thread(clean, {"s": spam_conversation}, {}), ReplyToClosed.REOPEN)
    assert placement.action == "new" and placement.related_conversation_id == "conv-s"

    more_spam = incoming(spam=True, reply_token="s")
    assert place(more_spam, find_thread(more_spam, {"s": spam_conversation}, {}), ReplyToClosed.REOPEN).action \
        == "join"


def test_snippet_collapses_whitespace_and_falls_back_to_html():
    assert snippet("Hello,\n\n  my order") == "Hello, my order"
    assert snippet(None, "<p>Hi <b>there</b></p>") == "Hi there"
    assert len(snippet("x" * 500)) == 200


def test_inbox_digest_ignores_order():
    one = {"inbox_id": "i", "name": "S", "channel_addresses": ["a@x", "b@x"], "member_emails": ["m@x", "n@x"]}
    two = {"inbox_id": "i", "name": "S", "channel_addresses": ["b@x", "a@x"], "member_emails": ["n@x", "m@x"]}
    assert inbox_digest(one) == inbox_digest(two)
    assert inbox_digest(one) != inbox_digest({**one, "name": "Sales"})
