"""Subject prefixes: forward/reply markers in many languages, stacked, tagged, counted."""

from __future__ import annotations

import pytest

from ingest.domain.subjects import (
    has_forward_prefix,
    has_reply_prefix,
    leading_prefix_kind,
    leading_prefix_word,
    strip_prefixes,
)

FORWARD_SUBJECTS = [
    "Fwd: Hello",
    "FWD: Hello",
    "fwd: Hello",
    "Fw: Hello",
    "FW: Hello",
    "FW:Hello",
    "Fw : Hello",
    "Forwarded: Hello",
    "WG: Hello",
    "TR: Hello",
    "TR : Hello",
    "RV: Hello",
    "I: Hello",
    "ENC: Hello",
    "PD: Hello",
    "VS: Hello",
    "Vs: Hello",
    "VB: Hello",
    "VL: Hello",
    "Doorst: Hello",
    "Videresend: Hello",
    "Redir.: Hello",
    "İLT: Hello",
    "ILT: Hello",
    "ΠΡΘ: Hello",
    "הועבר: Hello",
    "转发: Hello",
    "转发：Hello",
    "轉寄: Hello",
    "Továbbítás: Hello",
    "Re: Fwd: Hello",
    "RE: FW: Hello",
    "AW: WG: Hello",
    "SV: VB: Hello",
    "[EXTERNAL] FW: Hello",
    "[External]Fwd: Hello",
    "Re: [EXT] Fwd: Hello",
    "RE[2]: FW: Hello",
    "Re(3): Fwd: Hello",
    "【内部連絡】FW: Hello",
    "回复: Fw:VMware vSphere",
    "Automatic reply: FW: Hello",
    "[Ticket #123] Fwd: Hello",
]
NOT_FORWARD_SUBJECTS = [
    "Hello",
    "FW planning for Q3",
    "Fwd planning",
    "Forward guidance: Q3",
    "Note: FW: not leading",
    "Re: Hello",
    "AW: Hello",
    "",
    "Firmware: update",
    "Tr. notes",
    "Info: Fwd: something",
    "RE: the FW: thing",
]


@pytest.mark.parametrize("subject", FORWARD_SUBJECTS)
def test_forward_prefix_anywhere_in_the_leading_chain(subject: str) -> None:
    assert has_forward_prefix(subject)


@pytest.mark.parametrize("subject", NOT_FORWARD_SUBJECTS)
def test_no_forward_prefix(subject: str) -> None:
    assert not has_forward_prefix(subject)


def test_none_subject() -> None:
    assert not has_forward_prefix(None)
    assert not has_reply_prefix(None)
    assert strip_prefixes(None) == ""


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Hello",
        "RE: Hello",
        "AW: Hello",
        "SV: Hello",
        "Antw: Hello",
        "R: Hello",
        "RIF: Hello",
        "RES: Hello",
        "Odp: Hello",
        "YNT: Hello",
        "Vá: Hello",
        "ΑΠ: Hello",
        "回复：Hello",
        "答复: Hello",
        "回覆: Hello",
        "Re[5]: Hello",
        "Fwd: Re: Hello",
        "[EXTERNAL] RE: Hello",
        "Automatic reply: Hello",
        "Abwesenheitsnotiz: Hello",
    ],
)
def test_reply_prefixes(subject: str) -> None:
    assert has_reply_prefix(subject)


@pytest.mark.parametrize(
    ("subject", "kind"),
    [
        ("Re: Fwd: x", "reply"),
        ("Fwd: Re: x", "forward"),
        ("AW: WG: x", "reply"),
        ("WG: AW: x", "forward"),
        ("[EXTERNAL] FW: x", "forward"),
        ("x", None),
        ("Automatic reply: FW: x", "reply"),
    ],
)
def test_leading_prefix_kind(subject: str, kind: str | None) -> None:
    assert leading_prefix_kind(subject) == kind


@pytest.mark.parametrize(
    ("subject", "stripped"),
    [
        ("Fwd: Hello", "Hello"),
        ("Re: Aw:  Re: Aw:This is the subject", "This is the subject"),
        ("Re: R: R: R: Re:R: Hello", "Hello"),
        ("[EXTERNAL] RE: FW: Hello", "Hello"),
        ("Fwd: [Ticket #123] Hello", "[Ticket #123] Hello"),
        ("Re: [oss-security] Cve issue", "[oss-security] Cve issue"),
        ("转发：你好", "你好"),
        ("RE[2]: FW: Hello", "Hello"),
        ("FW planning for Q3", "FW planning for Q3"),
        ("Fwd: ", ""),
        ("  Hello  ", "Hello"),
        ("Note: Hello", "Note: Hello"),
    ],
)
def test_strip_prefixes(subject: str, stripped: str) -> None:
    assert strip_prefixes(subject) == stripped


@pytest.mark.parametrize(
    ("subject", "word"),
    [("VS: Tarjous", "vs"), ("[EXT] Vs: x", "vs"), ("RE[2]: FW: x", "re"), ("Note: x", None), ("Hello", None),
     (None, None), ("İLT: Teklif", "ilt")],
)
def test_leading_prefix_word(subject: str | None, word: str | None) -> None:
    assert leading_prefix_word(subject) == word
