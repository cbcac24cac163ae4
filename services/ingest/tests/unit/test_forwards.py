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


# ---- issue 19: server forwards, bidi, structure, Reply-To, nesting, the pre-check ---------------------------

from ingest.domain import forwards  # noqa: E402

ALL_CORPORA = [CORPUS, CORPUS.parent / "forward_heldout", CORPUS.parent / "forward_classes" / "tuned",
               CORPUS.parent / "forward_classes" / "heldout"]


def test_the_pre_check_never_changes_a_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cheap marker check only keeps mail off the slow path: over every corpus message, the detector
    gives the same answer with it as with every message sent down the slow path."""
    messages = [parse_message(path.read_bytes()) for folder in ALL_CORPORA for path in sorted(folder.glob("*.eml"))]
    assert len(messages) > 400
    with_check = [detect_forward(parsed) for parsed in messages]
    monkeypatch.setattr(forwards, "_has_forward_marker", lambda text, subject: True)
    without_check = [detect_forward(parsed) for parsed in messages]
    assert with_check == without_check


def test_the_pre_check_keeps_ordinary_mail_off_the_slow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(forwards, "_from_text", lambda *args: calls.append(args))
    text = "Hello,\n\nmy order 1234 arrived broken at 10:30 today. See https://example.com/x.\n\nThanks\nOlga\n"
    html = "<p>Hello,</p><p>my order arrived broken.</p>"
    assert detect_forward(_parsed("Broken order", text, html)) is None
    assert calls == []


def _with_headers(subject: str, text: str, **headers: str) -> ParsedMessage:
    parsed = _parsed(subject, text)
    for name, value in headers.items():
        parsed.message[name.replace("_", "-")] = value
    return parsed


def test_exchange_auto_forward_header_must_say_true() -> None:
    assert detect_forward(_with_headers("Hello", "Hi there", X_MS_Exchange_Organization_AutoForwarded="false")) is None
    info = detect_forward(_with_headers("Hello", "Hi there", X_MS_Exchange_Organization_AutoForwarded="true"))
    assert info.original_sender == Address("Alex Agent", "alex@team.example")
    assert info.detected_by == "server_forward:exchange"


def test_a_server_forward_header_decides_before_a_body_block() -> None:
    info = detect_forward(_with_headers("FW: Pressing matter", OUTLOOK_BLOCK, X_Forwarded_To="support@team.example"))
    assert info.detected_by == "server_forward:gmail" and info.original_sender.email == "alex@team.example"


def test_a_forward_loop_is_not_a_forward_of_itself() -> None:
    looped = _with_headers("Digest", "Nothing new", X_Forwarded_For="alex@team.example alex@team.example")
    assert detect_forward(looped) is None
    loop_header = _with_headers("Digest", "Nothing new", X_Forwarded_To="support@team.example",
                                X_Loop="alex@team.example")
    assert detect_forward(loop_header) is None


def test_a_relay_that_did_not_rewrite_from_is_not_a_forward() -> None:
    assert detect_forward(_with_headers("Hello", "Hi", X_Original_Sender="alex@team.example")) is None


def test_bidi_controls_are_removed_inside_addresses_and_around_labels() -> None:
    text = ("\u200f---------- Forwarded message ---------\n"
            "\u202bFrom:\u202c Dana <\u200ed\u2066ana@exam\u2069ple.com\u200e>\n"
            "Date: Mon, Mar 3, 2025 at 9:00 AM\nSubject: x\n\nbody\n")
    assert detect_forward(_parsed("Fwd: x", text)).original_sender == Address("Dana", "dana@example.com")


def test_reply_to_never_overrides_a_from_with_an_address_nor_comes_from_below_the_block() -> None:
    own = ("Begin forwarded message:\n\nFrom: Dora <dora@planner.example>\nSubject: s\n"
           "Reply-To: other@planner.example\n\nbody\n")
    assert detect_forward(_parsed("Fwd: s", own)).original_sender == Address("Dora", "dora@planner.example")
    below = ("Reply-To: note@team.example\n\nBegin forwarded message:\n\nFrom: Acme Billing\nSubject: s\n"
             "Date: 3 March 2025 at 09:12\n\nWrite to billing@acme.example, Reply-To billing@acme.example\n")
    assert detect_forward(_parsed("Fwd: s", below)).original_sender == Address("Acme Billing", None)


def test_the_structural_path_needs_the_subject_repeated_and_a_date() -> None:
    block = "Ab: Lena Roth <lena@roth.example>\nWann: 3.3.2025 09:12\nSache: Termin morgen\nFür: x@team.example\n\nHi\n"
    assert detect_forward(_parsed("XY: Termin morgen", block)).original_sender.email == "lena@roth.example"
    assert detect_forward(_parsed("XY: Something else", block)) is None  # the subject is not repeated
    no_date = block.replace("3.3.2025 09:12", "gestern")
    assert detect_forward(_parsed("XY: Termin morgen", no_date)) is None
    too_long = block.replace("Für:", "A: 1\nB: 2\nC: 3\nFür:")
    assert detect_forward(_parsed("XY: Termin morgen", too_long)) is None  # 7 lines: not a header block


def test_the_structural_path_stays_linear_on_hostile_input() -> None:
    body = "Termin morgen\n" + "Ab: x <a@b.example>\nWann: 3.3.2025 09:12\n" * 20_000
    assert detect_forward(_parsed("XY: Termin morgen", body)) is None  # runs of 40000 lines: never 3-6


def test_a_note_with_a_sentence_stops_the_step_down() -> None:
    text = ("From: Bob <bob@team.example>\nSent: Tuesday, March 4, 2025 9:00 AM\nSubject: FW: x\n\n"
            "Could you handle this one please?\n\n"
            "From: Carla <carla@customer.example>\nSent: Monday, March 3, 2025 9:00 AM\nSubject: x\n\nbody\n")
    info = detect_forward(_parsed("FW: FW: x", text))
    assert info.original_sender.email == "bob@team.example"
    assert info.steps[-1]["rule"] == "stop: the forwarder wrote a note above the next block"


def test_a_web_form_summary_is_not_a_structural_forward() -> None:
    form = ("Email: john@customer.example\nName: John Smith\nDate: 2025-03-04 10:00\nSubject: Refund request\n"
            "\nI would like a refund.\n")
    assert detect_forward(_parsed("Refund request", form)) is None
    with_rule = "-------- Средно съобщение --------\n" + form.replace("Email:", "Ot:")
    assert detect_forward(_parsed("Refund request", with_rule)).original_sender.email == "john@customer.example"


REPLY_TO_FORWARD = ("{own}\n\n" + "_" * 32 + "\nFrom: Alex Agent <alex@team.example>\n"
                    "Sent: Tuesday, March 4, 2025 3:00 PM\nTo: Bob <bob@team.example>\nSubject: FW: Damaged\n\n\n"
                    + "_" * 32 + "\nFrom: Erin Buyer <erin@buyer.example>\nSent: Monday, March 3, 2025 9:00 AM\n"
                    "Subject: Damaged\n\nThe parcel arrived damaged.\n")


@pytest.mark.parametrize(("own", "original"), [
    ("", "erin@buyer.example"),
    ("Bob Inside\nCustomer Care | Team Example\n+49 30 1234567", "erin@buyer.example"),
    ("Thanks,\nBob", "erin@buyer.example"),
    ("Done", None),
    ("Refund issued.", None),
    ("We sent a replacement today.\nBob", None),
])
def test_a_reply_to_a_forward_is_a_forward_only_with_an_empty_or_signature_only_body(own, original) -> None:
    info = detect_forward(_parsed("RE: FW: Damaged", REPLY_TO_FORWARD.format(own=own)))
    assert (info.original_sender.email if info else None) == original


def test_hostile_and_malformed_server_forward_headers() -> None:
    no_address = _with_headers("Hello", "Hi", X_Original_Sender="<<<>>> (nobody)")
    assert detect_forward(no_address) is None
    crowd = " ".join(f"user{i}@relay.example" for i in range(20_000))
    info = detect_forward(_with_headers("Hello", "Hi", X_Forwarded_For=crowd))
    assert info.detected_by == "server_forward:gmail" and info.original_sender.email == "alex@team.example"
    parsed = _with_headers("Hello", "Hi", X_Forwarded_To="support@team.example")
    del parsed.message["From"]
    parsed.message["From"] = "no address at all"
    assert detect_forward(parsed) is None  # a server forward needs the author's address in From
    twice = _with_headers("Hello", "Hi", X_MS_Exchange_Organization_AutoForwarded="true")
    assert detect_forward(twice) == detect_forward(twice)  # the same message twice: the same answer


def test_the_structural_path_reads_labels_in_bold_and_in_table_cells() -> None:
    # Hausa labels: in no table (Thunderbird, Roundcube, Android Email), so only the structure can tell
    cells = ("<p>-------- Saƙo na asali --------</p><table><tr><th>Batu: </th><td>Oda 88</td></tr>"
             "<tr><th>Kwanan wata: </th><td>4 Maris 2025 10:12</td></tr>"
             "<tr><th>Daga: </th><td>Musa Ali &lt;musa@misali.example&gt;</td></tr>"
             "<tr><th>Zuwa: </th><td>support@team.example</td></tr></table><p>Sannu</p>")
    info = detect_forward(_parsed("Fwd: Oda 88", html=cells))
    assert info.original_sender == Address("Musa Ali", "musa@misali.example")
    assert info.detected_by == "html_block:structural"
    bold = ("<div>Don Allah</div><div><b>Daga\uff1a</b> Musa Ali &lt;musa@misali.example&gt;<br>"
            "<b>An aika\uff1a</b> 4 Maris 2025 10:12<br><b>Batu\uff1a</b> Oda 88</div><p>Sannu</p>")
    assert detect_forward(_parsed("FW: Oda 88", html=bold)).original_sender.email == "musa@misali.example"


def test_nesting_steps_down_into_blocks_no_table_knows() -> None:
    text = ("\u200fDaga: Sani <sani@team.example>\n\u200fAn aika: 4 Maris 2025 09:00\n"
            "\u200fBatu: FW: Korafi\n\n\n"
            "\u200fDaga: Laila Hassan <laila@customer.example>\n\u200fAn aika: 3 Maris 2025 17:00\n"
            "\u200fBatu: Korafi\n\nKayan ya lalace.\n")
    info = detect_forward(_parsed("FW: FW: Korafi", text))
    assert info.original_sender == Address("Laila Hassan", "laila@customer.example")
    assert [step["rule"] for step in info.steps] == [
        "structure: outermost block", "step down: the block above is empty and itself a forward"]
