"""Who gets a contact, and what a timeline entry shows: plain rules, no IO."""

import pytest

from contacts.domain.senders import decide_contact, is_automated_sender
from mailroom_shared.text import snippet


def decide(email, *, name="Ada", own=(), spam=False, loop=False, automated=False):
    return decide_contact({"name": name, "email": email}, own_addresses=set(own), spam=spam, loop=loop,
                          create_for_automated=automated)


def test_an_unknown_sender_gets_a_contact_under_the_normalised_address():
    decision = decide("Ada.Lovelace@EXAMPLE.org", name="  Ada Lovelace ")
    assert (decision.email, decision.name) == ("ada.lovelace@example.org", "Ada Lovelace")


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"spam": True}, "spam"),
    ({"loop": True}, "loop"),
    ({"own": {"support@team.example"}}, "own address"),
])
def test_spam_loops_and_our_own_addresses_never_become_contacts(kwargs, reason):
    assert decide("support@team.example", **kwargs).email is None, reason


@pytest.mark.parametrize("address", ["MAILER-DAEMON@mx.example", "postmaster@x.example", "no-reply@shop.example",
                                     "noreply@shop.example", "do_not_reply@x.example", "bounces+123@list.example"])
def test_robots_get_no_contact_unless_configured(address):
    assert is_automated_sender(address.lower())
    assert decide(address).email is None
    assert decide(address, automated=True).email == address.lower()


def test_people_whose_address_merely_contains_robot_words_are_people():
    assert not is_automated_sender("noreen@example.com")
    assert decide("replies-welcome@example.com").email == "replies-welcome@example.com"


def test_a_name_without_an_address_gets_no_invented_contact():
    decision = decide_contact({"name": "Katherine Herrera", "email": None}, own_addresses=set(), spam=False,
                              loop=False, create_for_automated=False)
    assert decision.email is None and decision.name == "Katherine Herrera"


def test_snippet_collapses_whitespace_falls_back_to_html_and_is_bounded():
    assert snippet("Hello,\n\n   my  order") == "Hello, my order"
    assert snippet(None, "<p>Only <b>HTML</b></p>") == "Only HTML"
    long = snippet("word " * 100)
    assert len(long) == 200 and long.endswith("…")
