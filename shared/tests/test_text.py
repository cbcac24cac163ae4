"""The text and time formats services agree on: snippets, reply addresses, ISO times."""

import datetime as dt

from mailroom_shared.text import SNIPPET_CHARS, iso_time, reply_address, snippet


def test_a_snippet_folds_white_space():
    assert snippet("  Hello,\n\n  my   order\thas not arrived.  ") == "Hello, my order has not arrived."


def test_a_long_text_is_cut_with_an_ellipsis_within_the_limit():
    cut = snippet("word " * 100, limit=20)
    assert cut == "word word word word…"
    assert len(cut) <= 20
    assert len(snippet("x" * 1000)) == SNIPPET_CHARS and snippet("x" * 1000).endswith("…")


def test_a_text_of_exactly_the_limit_is_not_cut():
    assert snippet("x" * 20, limit=20) == "x" * 20


def test_without_a_text_part_the_html_is_used_without_its_tags():
    assert snippet(None, "<p>Hello <b>there</b></p><div>friend</div>") == "Hello there friend"
    assert snippet(" \n ", "<p>from the html</p>") == "from the html"  # a blank text part counts as none
    assert snippet("the text", "<p>the html</p>") == "the text"


def test_nothing_gives_an_empty_snippet():
    assert snippet(None) == "" and snippet("", None) == ""


def test_the_reply_address_carries_the_token_as_a_plus_address():
    assert reply_address("support@mailroom.test", "t0k3n") == "support+t0k3n@mailroom.test"
    assert reply_address("help.desk@sub.example.com", "abc") == "help.desk+abc@sub.example.com"


def test_iso_time_reads_a_naive_time_as_utc_and_keeps_an_aware_ones_offset():
    assert iso_time(dt.datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05+00:00"
    paris = dt.timezone(dt.timedelta(hours=1))
    assert iso_time(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=paris)) == "2024-01-02T03:04:05+01:00"
    assert iso_time(None) is None
