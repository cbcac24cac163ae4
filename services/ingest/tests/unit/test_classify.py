"""classify: which mail must never get an automatic answer, which is a bounce, spam or our own."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.domain.classify import ORIGIN_HEADER, classify
from ingest.domain.model import Classification
from ingest.domain.parsing import parse_message

FIXTURES = Path(__file__).parents[1] / "fixtures" / "mime"
OWN = frozenset({"Support@MailRoom.test"})
SCORES = {"X-Spam-Score": 5.0, "X-Rspamd-Score": 6.0}


def classify_fixture(name: str) -> Classification:
    parsed = parse_message((FIXTURES / name).read_bytes())
    return classify(
        parsed, own_addresses=OWN, own_message_id_domain="mailroom.test", spam_score_headers=SCORES
    )


def classify_headers(headers: str, body: str = "hello", **kwargs) -> Classification:
    raw = f"From: Ann <ann@example.com>\nMessage-ID: <m1@example.com>\n{headers}\n\n{body}\n".encode()
    return classify(parse_message(raw), **kwargs)


def test_a_customers_mail_is_nothing_special():
    assert classify_fixture("plain_customer.eml") == Classification()


def test_out_of_office_reply_is_auto_submitted():
    result = classify_fixture("out_of_office.eml")

    assert result.auto_submitted and not (result.bounce or result.spam or result.loop)
    assert "auto_submitted:auto-replied" in result.reasons
    assert "auto_submitted:X-Auto-Response-Suppress" in result.reasons


def test_list_mail_is_auto_submitted():
    result = classify_fixture("list_mail.eml")

    assert result.auto_submitted
    assert "auto_submitted:list" in result.reasons
    assert "auto_submitted:precedence=list" in result.reasons


def test_dsn_is_a_bounce_and_the_returned_copy_of_our_mail_is_not_a_loop():
    result = classify_fixture("dsn_bounce.eml")

    assert result.bounce and result.auto_submitted
    assert not result.loop  # X-Mailroom-Origin is only inside the attached original
    assert "bounce:multipart/report" in result.reasons
    assert "bounce:message/delivery-status" in result.reasons


def test_spam_flagged_mail():
    result = classify_fixture("spam_flagged.eml")

    assert result.spam and not result.auto_submitted
    assert result.reasons == ("spam:X-Spam-Flag", "spam:X-Spam-Status", "spam:X-Rspamd-Score=14.2>=6")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ("Auto-Submitted: auto-generated", "auto_submitted:auto-generated"),
        ("Auto-Submitted: auto-notified; owner-email=x@example.com", "auto_submitted:auto-notified"),
        ("Precedence: bulk", "auto_submitted:precedence=bulk"),
        ("Precedence: junk", "auto_submitted:precedence=junk"),
        ("Precedence: auto_reply", "auto_submitted:precedence=auto_reply"),
        ("X-Autoreply: yes", "auto_submitted:X-Autoreply"),
        ("X-Autorespond: Out of office", "auto_submitted:X-Autorespond"),
        ("X-Auto-Response-Suppress: OOF, AutoReply", "auto_submitted:X-Auto-Response-Suppress"),
        ("List-Unsubscribe: <https://news.example/u>", "auto_submitted:list"),
        ("List-Id: <dev.lists.example>", "auto_submitted:list"),
        ("X-Loop: yes", "auto_submitted:X-Loop"),
        ("Return-Path: <>", "auto_submitted:null_return_path"),
    ],
)
def test_auto_submitted_signals(headers, reason):
    result = classify_headers(headers)

    assert result.auto_submitted
    assert reason in result.reasons


@pytest.mark.parametrize(
    "headers",
    [
        "Auto-Submitted: no",
        "Auto-Submitted: No",
        "Precedence: first-class",
        "X-Auto-Response-Suppress: DR, RN, NRN",
        "Return-Path: <ann@example.com>",
    ],
)
def test_people_are_not_auto_submitted(headers):
    assert classify_headers(headers) == Classification()


@pytest.mark.parametrize("sender", ["owner-dev@lists.example", "dev-request@lists.example"])
def test_list_robot_senders_are_auto_submitted(sender):
    raw = f"From: {sender}\n\nhello".encode()

    assert classify(parse_message(raw)).auto_submitted


def test_read_receipt_is_auto_submitted_but_not_a_bounce():
    result = classify_headers(
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="r"',
        body="--r\nContent-Type: text/plain\n\nYour message was read.\n--r--",
    )

    assert result.auto_submitted and not result.bounce
    assert "auto_submitted:read_receipt" in result.reasons


def test_postmaster_bounce_without_dsn_structure_is_recognised_by_its_content():
    raw = (
        b"From: postmaster@mx.example.net\nSubject: Delivery Status Notification (Failure)\n\n"
        b"Delivery to the following recipient failed permanently: nobody@example.org\n"
    )

    result = classify(parse_message(raw))

    assert result.bounce
    assert "bounce:sender=postmaster" in result.reasons


def test_postmaster_writing_as_a_person_is_not_a_bounce():
    raw = (
        b"From: postmaster@partner.example\nSubject: Question about your SPF record\n\nHi, could you check?\n"
    )

    assert not classify(parse_message(raw)).bounce


@pytest.mark.parametrize(
    ("headers", "spam"),
    [
        ("X-Spam-Flag: YES", True),
        ("X-Spam-Flag: NO", False),
        ("X-Spam-Status: Yes, score=7.2 required=5.0", True),
        ("X-Spam-Status: No, score=-0.1 required=5.0", False),
        ("X-Spam: Yes", True),
        ("X-Spam-Score: 5.0", True),  # at the threshold
        ("X-Spam-Score: 4.9", False),
        ("X-Rspamd-Score: 5.9", False),
        ("X-Rspamd-Score: 6,5", True),  # decimal comma
        ("X-Rspamd-Score: not a number", False),
        ("X-Other-Score: 99", False),  # not configured: not trusted
    ],
)
def test_spam_headers_and_configured_score_thresholds(headers, spam):
    assert classify_headers(headers, spam_score_headers=SCORES).spam is spam


def test_score_headers_are_ignored_unless_configured():
    assert not classify_headers("X-Spam-Score: 50").spam


def test_our_origin_header_means_our_own_mail_came_back():
    result = classify_headers(f"{ORIGIN_HEADER}: instance-1")

    assert result.loop
    assert result.reasons == ("loop:X-Mailroom-Origin",)


def test_own_address_with_own_message_id_domain_is_a_loop():
    raw = b"From: Support <support@mailroom.test>\nMessage-ID: <abc.123@MailRoom.test>\n\nbody"

    result = classify(parse_message(raw), own_addresses=OWN, own_message_id_domain="mailroom.test")

    assert result.loop
    assert "loop:own_sender_and_message_id" in result.reasons


@pytest.mark.parametrize(
    "raw",
    [
        # a customer replying to us references our ids: not a loop
        b"From: ann@example.com\nMessage-ID: <x@example.com>\nReferences: <abc@mailroom.test>\n\nthanks",
        # staff sending as the shared address from their own client: a real message
        b"From: support@mailroom.test\nMessage-ID: <x@outlook.example>\n"
        b"References: <abc@mailroom.test>\n\nhi",
    ],
)
def test_not_a_loop(raw):
    assert not classify(parse_message(raw), own_addresses=OWN, own_message_id_domain="mailroom.test").loop


def test_classifying_garbage_does_not_raise():
    parsed = parse_message(b"\x00\xff garbage without headers")

    assert classify(parsed, own_addresses=OWN, own_message_id_domain="mailroom.test") == Classification()
