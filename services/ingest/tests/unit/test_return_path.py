"""Where automatic replies may go (RFC 3834): the SMTP envelope sender, else a single Return-Path
header; a null, malformed, hostile or doubled path gives None (nothing automatic is sent)."""

from email import message_from_string, policy

from ingest.domain.return_path import return_path


def headers(*lines: str):
    return message_from_string("\n".join([*lines, "Subject: x", "", "body"]), policy=policy.default)


def test_the_envelope_sender_wins_then_the_header():
    assert return_path("ada@example.com", headers("Return-Path: <other@example.com>")) == "ada@example.com"
    assert return_path(None, headers("Return-Path: <bob@example.com>")) == "bob@example.com"
    assert return_path(None, headers("Return-Path: bob@example.com")) == "bob@example.com"


def test_null_missing_hostile_or_doubled_paths_give_none():
    assert return_path("", headers()) is None  # MAIL FROM:<> (a bounce)
    assert return_path(None, headers("Return-Path: <>")) is None
    assert return_path(None, headers()) is None
    assert return_path(None, headers("Return-Path: <a@example.com>", "Return-Path: <b@example.com>")) is None
    for bad in ["<not an address>", "<a@b@c>", "<@example.com>", "<a@example.com>, <b@example.com>",
                "<" + "x" * 400 + "@example.com>", "<a\"b@example.com>"]:
        assert return_path(None, headers(f"Return-Path: {bad}")) is None, bad
    assert return_path("a@example.com\r\nBcc: x@y.z", headers()) is None
