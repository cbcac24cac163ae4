"""What a quarantined message still shows in its inbox: the headers read safely, each on its own."""

import time

from ingest.domain.summary import summarise

HOSTILE = (b"From: =?utf-8?q?Ad=C3=A9_Customer?= <ada@example.com>\r\nSubject: =?utf-8?q?Caf=C3=A9_order?=\r\n"
           b"Message-ID: <m1@example.com>\r\nIn-Reply-To: <parent@example.com>\r\nReferences: <root@x> <parent@x>\r\n"
           b"Date: Sun, 06 Dec 2026 10:00:00 +0000\r\nX-Spam-Flag: YES\r\n"
           b"Content-Type: text/plain" + b";" * 50_000 + b"\r\n\r\nbody")


def test_the_headers_of_a_message_the_parser_refuses_are_read_quickly():
    started = time.monotonic()
    summary = summarise(HOSTILE)
    assert time.monotonic() - started < 1  # a generous bound: the full parser took 29 s on this shape
    assert summary["sender"] == {"name": "Adé Customer", "email": "ada@example.com"}
    assert summary["subject"] == "Café order"
    assert summary["message_id"] == "m1@example.com"
    assert summary["in_reply_to"] == ["parent@example.com"]
    assert summary["references"] == ["root@x", "parent@x"]
    assert summary["date"] == "2026-12-06T10:00:00+00:00"
    assert summary["spam"] is True and summary["spam_reasons"] == ["spam:X-Spam-Flag"]


def test_unreadable_headers_leave_placeholders_and_a_stable_id():
    garbage = b"\xff\xfe\x00garbage without headers"
    summary = summarise(garbage)
    assert (summary["sender"], summary["subject"], summary["spam"]) == (None, None, False)
    assert summary["message_id"] == summarise(garbage)["message_id"]  # the same bytes, the same id
    assert summary["message_id"].endswith("@generated.mailroom.invalid")


def test_a_giant_header_value_is_cut_not_trusted():
    summary = summarise(b"From: " + b"a" * 20_000 + b"\r\nSubject: fine\r\n\r\nbody")
    assert summary["subject"] == "fine"
    assert summary["sender"] is None or len(summary["sender"]["name"] or "") <= 200


def test_the_spam_score_threshold_applies():
    raw = b"From: x@example.com\r\nX-Spam-Score: 7.5\r\nSubject: s\r\n\r\nbody"
    assert summarise(raw, {"X-Spam-Score": 5.0})["spam"] is True
    assert summarise(raw, {"X-Spam-Score": 9.0})["spam"] is False
