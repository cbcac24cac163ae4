"""Forward detection over the .eml corpus (parsed with the real parser) plus focused unit tests.

Each corpus case has its expectation in `forward_corpus/expected.json`:
`{"case.eml": {"forward": true, "original_email": ..., "original_name": ..., "detected_by_prefix": ...}}`
(`original_subject` is checked when present). Addresses are expected in normalised (lower-case) form.
"""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

import pytest

from ingest.domain.forwards import detect_forward, html_to_text, parse_from_value
from ingest.domain.model import Address, ParsedMessage
from ingest.domain.parsing import parse_message

CORPUS = Path(__file__).parents[1] / "forward_corpus"
EXPECTED: dict[str, dict] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))


def test_corpus_is_complete() -> None:
    files = {path.name for path in CORPUS.glob("*.eml")}
    assert files == set(EXPECTED), "every .eml needs an expectation and vice versa"
    assert len(files) >= 80


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_corpus_case(case: str) -> None:
    expected = EXPECTED[case]
    info = detect_forward(parse_message((CORPUS / case).read_bytes()))
    if not expected["forward"]:
        assert info is None, f"{case}: not a forward, got {info}"
        return
    assert info is not None, f"{case}: forward not detected"
    assert info.original_sender == Address(expected["original_name"], expected["original_email"])
    assert info.detected_by.startswith(expected["detected_by_prefix"]), info.detected_by
    if "original_subject" in expected:
        assert info.original_subject == expected["original_subject"]


# ---- in-memory messages for the focused tests --------------------------------------------------------


def _parsed(subject: str, text: str | None = None, html: str | None = None, **headers: str) -> ParsedMessage:
    message = EmailMessage()
    message["From"] = "Alex Agent <alex@team.example>"
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    return ParsedMessage(
        message=message,
        message_id="x@y",
        subject=subject,
        sender=Address("Alex Agent", "alex@team.example"),
        reply_to=[],
        to=[],
        cc=[],
        date=None,
        in_reply_to=[],
        references=[],
        text=text,
        html=html,
        attachments=[],
    )


OUTLOOK_BLOCK = """From: Joe Montana <joemontana@email.com>
Sent: Tuesday, January 11, 2022 3:34 PM
To: Mary Montana <marymontana@email.com>
Subject: Pressing matter

Hi
"""
GMAIL_BLOCK = """---------- Forwarded message ---------
From: John Doe <john.doe@acme.com>
Date: Wed, Oct 27, 2021 at 9:31 AM
Subject: Integer
To: <bessie@acme.com>

body
"""


@pytest.mark.parametrize(
    "subject",
    [
        "FW: Pressing matter",
        "Fw: x",
        "FWD: x",
        "fwd: x",
        "[EXTERNAL] FW: x",
        "WG: x",
        "TR : x",
        "RV: x",
        "I: x",
        "ENC: x",
        "PD: x",
        "VS: x",
        "VB: x",
        "VL: x",
        "Doorst: x",
        "İLT: x",
        "转发：x",
        "轉寄: x",
        "Fwd: [Ticket #123] x",
        "WG: AW: x",
        "FW: RE[3]: x",
    ],
)
def test_outlook_block_with_any_forward_prefix(subject: str) -> None:
    info = detect_forward(_parsed(subject, "Please see below.\n\n" + OUTLOOK_BLOCK))
    assert info is not None and info.original_sender == Address("Joe Montana", "joemontana@email.com")


@pytest.mark.parametrize(
    "subject", ["RE: Pressing matter", "AW: WG: x", "Re: Fwd: x", "SV: x", "Automatic reply: FW: x"]
)
def test_outlook_block_under_reply_subject_is_a_reply(subject: str) -> None:
    assert detect_forward(_parsed(subject, "Thanks, will do.\n\n" + OUTLOOK_BLOCK)) is None


def test_outlook_block_at_top_without_prefix_counts() -> None:
    info = detect_forward(_parsed("Pressing matter", "\n" + OUTLOOK_BLOCK))
    assert info is not None and info.original_sender.email == "joemontana@email.com"


def test_outlook_block_below_a_note_without_prefix_does_not() -> None:
    assert (
        detect_forward(_parsed("Pressing matter", "Here is what Joe wrote yesterday.\n\n" + OUTLOOK_BLOCK))
        is None
    )


@pytest.mark.parametrize("subject", ["Customer question", "Re: something else", "FW planning for Q3", ""])
def test_explicit_forward_separator_counts_under_any_subject(subject: str) -> None:
    info = detect_forward(_parsed(subject, "Have a look\n\n" + GMAIL_BLOCK))
    assert info is not None and info.original_sender == Address("John Doe", "john.doe@acme.com")
    assert info.detected_by == "text_block:gmail"


def test_fw_subject_without_block_is_not_a_forward() -> None:
    assert detect_forward(_parsed("FW planning for Q3", "From the team: here is the Q3 plan.")) is None
    assert detect_forward(_parsed("Fwd: notes", "Notes: call bob@example.com tomorrow")) is None


def test_html_only_message_uses_html() -> None:
    html = (
        '<div>fyi</div><hr><div id="x_divRplyFwdMsg"><b>Von:</b> Anna &lt;anna@firma.example.de&gt;<br>'
        "<b>Gesendet:</b> Montag<br><b>Betreff:</b> Hallo</div><p>Text</p>"
    )
    info = detect_forward(_parsed("WG: Hallo", None, html))
    assert info is not None
    assert info.original_sender == Address("Anna", "anna@firma.example.de")
    assert info.detected_by == "html_block:outlook"
    assert info.original_subject == "Hallo"


def test_resent_headers_keep_the_original_from() -> None:
    parsed = _parsed("Printer", "jammed", Resent_From="Alex Agent <alex@team.example>")
    parsed.message.replace_header("From", "Martin Kunde <martin@kunde.example.de>")
    info = detect_forward(parsed)
    assert info is not None and info.detected_by == "resent_headers"
    assert info.original_sender == Address("Martin Kunde", "martin@kunde.example.de")


def test_embedded_message_is_used() -> None:
    inner = EmailMessage()
    inner["From"] = '"Doe, John" <John.Doe@Acme.COM>'
    inner["Subject"] = "Inner"
    inner["Date"] = "Tue, 4 Mar 2025 14:02:00 +0100"
    inner.set_content("hello")
    parsed = _parsed("Fwd: Inner", "see attached")
    parsed.embedded_messages = [inner]
    info = detect_forward(parsed)
    assert info is not None and info.detected_by == "rfc822_attachment"
    assert info.original_sender == Address("Doe, John", "john.doe@acme.com")
    assert info.original_subject == "Inner"


def test_auto_reply_with_attached_original_is_not_a_forward() -> None:
    inner = EmailMessage()
    inner["From"] = "Alex Agent <alex@team.example>"
    inner.set_content("hello")
    parsed = _parsed("Automatic reply: Hello", "I am away", Auto_Submitted="auto-replied")
    parsed.embedded_messages = [inner]
    assert detect_forward(parsed) is None


def test_forward_of_forward_steps_down_only_when_outer_is_empty() -> None:
    inner = GMAIL_BLOCK.replace("John Doe <john.doe@acme.com>", "Origin <origin@example.org>")
    outer_empty = (
        "---------- Forwarded message ---------\nFrom: Mid <mid@example.org>\nDate: today\n"
        "Subject: Fwd: Integer\n\nSent from my iPhone\n\n" + inner
    )
    outer_note = outer_empty.replace(
        "Sent from my iPhone", "Please refund this customer before Friday, thanks."
    )
    assert (
        detect_forward(_parsed("Fwd: Fwd: Integer", outer_empty)).original_sender.email
        == "origin@example.org"
    )
    assert detect_forward(_parsed("Fwd: Fwd: Integer", outer_note)).original_sender.email == "mid@example.org"


def test_reply_history_inside_forward_is_not_stepped_into() -> None:
    text = GMAIL_BLOCK.replace(
        "body\n", "\nOn Tue, Oct 26, 2021 at 9:00 AM Zed <zed@example.org> wrote:\n> hi\n"
    )
    assert detect_forward(_parsed("Fwd: Integer", text)).original_sender.email == "john.doe@acme.com"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("John Doe <john.doe@acme.com>", Address("John Doe", "john.doe@acme.com")),
        ('"Last, First" <First.Last@Example.COM>', Address("Last, First", "first.last@example.com")),
        ("John Doe [mailto:john.doe@acme.com]", Address("John Doe", "john.doe@acme.com")),
        ("john.doe@acme.com", Address(None, "john.doe@acme.com")),
        ("<john.doe@acme.com>", Address(None, "john.doe@acme.com")),
        ("john.doe@acme.com <john.doe@acme.com>", Address(None, "john.doe@acme.com")),
        ("John Doe", Address("John Doe", None)),
        ("Valéry <va@acme.com<mailto:va@acme.com>>", Address("Valéry", "va@acme.com")),
        ("'Walter Sheltan' <walter@acme.com>", Address("Walter Sheltan", "walter@acme.com")),
        ("Paula (paula@paren.example.com)", Address("Paula", "paula@paren.example.com")),
        (
            "Akroyd, Cathy R [/O=EXCHANGELABS/OU=X/CN=RECIPIENTS/CN=ABC-CRAKROYD]",
            Address("Akroyd, Cathy R", None),
        ),
        ("Rebecca Griffin/NA/Enron@Enron", Address("Rebecca Griffin", None)),
        (
            "amd-gfx <amd-gfx-bounces@lists.freedesktop.org> on behalf of "
            "Alex Deucher <alexander.deucher@amd.com>",
            Address("Alex Deucher", "alexander.deucher@amd.com"),
        ),
        (
            "list-owner@vger.kernel.org [mailto:list-owner@vger.kernel.org] Im Auftrag von Jane Roe",
            Address("Jane Roe", None),
        ),
        (
            "samba [mailto:samba-bounces@lists.samba.org] Namens Rowland Penny via samba",
            Address("Rowland Penny", None),
        ),
        (
            "Exim-users <exim-users-bounces@exim.org> För Heiko Schlittermann via Exim-users",
            Address("Heiko Schlittermann", None),
        ),
        (
            "John Doe<mailto:john.doe@acme.com> <john.doe@acme.com<mailto:john.doe@acme.com>> on behalf of "
            "ticketing@acme.com<mailto:ticketing@acme.com>",
            Address("John Doe", "john.doe@acme.com"),
        ),
        ('"张三" &lt;zhangsan@qq.example.com&gt;;', Address("张三", "zhangsan@qq.example.com")),
        ("john@localhost", None),
    ],
)
def test_from_value_shapes(value: str, expected: Address | None) -> None:
    assert parse_from_value(value) == expected


def test_html_to_text_keeps_lines_and_quotes() -> None:
    text = html_to_text(
        "<style>p{}</style><p>Hi</p><blockquote type=cite>"
        "<div><b>From:</b> A &lt;a@b.example&gt;</div></blockquote>"
        "<table><tr><th>Date:</th><td>today</td></tr></table><hr><script>x()</script>"
    )
    lines = text.splitlines()
    assert "Hi" in lines
    assert "> From: A <a@b.example>" in lines
    assert "Date: today" in lines
    assert "_" * 32 in lines
    assert "x()" not in text and "p{}" not in text
    assert html_to_text("<div>unclosed <b>bold") == "unclosed bold"
    assert html_to_text("") == ""
