"""parse_message: what a user of the inbox sees from real-world (often broken) mail."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from ingest.domain.model import Address, ParseLimits
from ingest.domain.parsing import MessageTooComplex, parse_message

FIXTURES = Path(__file__).parents[1] / "fixtures" / "mime"


def load(name: str):
    return parse_message((FIXTURES / name).read_bytes())


def simple(body: bytes, *, headers: bytes = b"", content_type: bytes = b"text/plain") -> bytes:
    return (
        b"From: a@example.com\nTo: b@example.com\nSubject: t\nMessage-ID: <t@example.com>\n"
        + headers
        + b"Content-Type: "
        + content_type
        + b"\n\n"
        + body
    )


# -- everyday mail ------------------------------------------------------------------------------


def test_plain_mail_gives_sender_recipients_date_and_body():
    parsed = load("plain_customer.eml")

    assert parsed.sender == Address("Doe, Jane", "jane.doe@customer.example")
    assert parsed.to == [Address(None, "support@mailroom.test")]
    assert parsed.subject == "Where is my order?"
    assert parsed.message_id == "cust-1@customer.example"
    assert parsed.date.isoformat() == "2024-05-14T10:15:00+02:00"
    assert parsed.text.strip() == "Hello, my order has not arrived."
    assert parsed.html is None
    assert parsed.attachments == []
    assert parsed.defects == []


def test_alternative_bodies_inline_cid_image_and_attachment():
    parsed = load("inline_cid.eml")

    assert parsed.text == "Plain version [logo]"
    assert "<p>HTML version</p>" in parsed.html
    logo, invoice = parsed.attachments
    assert (logo.content_type, logo.disposition, logo.content_id) == ("image/png", "inline", "logo.png@01D9")
    assert logo.payload.startswith(b"\x89PNG")
    assert logo.size == len(logo.payload)
    assert logo.sha256 == hashlib.sha256(logo.payload).hexdigest()
    assert logo.filename.endswith(".png")
    assert (invoice.filename, invoice.disposition, invoice.payload) == (
        "invoice.pdf",
        "attachment",
        b"%PDF-1.4\n",
    )


def test_forwarded_message_is_an_eml_attachment_and_embedded_but_its_body_is_not_ours():
    parsed = load("forwarded_rfc822.eml")

    assert parsed.text == "Forwarding the customer's mail below."
    [attachment] = parsed.attachments  # the photo inside the forwarded mail is not listed on its own
    assert attachment.filename == "Broken order.eml"
    assert attachment.content_type == "message/rfc822"
    assert b"The inner body, written by the customer." in attachment.payload
    [embedded] = parsed.embedded_messages
    assert embedded["From"] == "Customer <customer@shop.example>"
    assert embedded["Message-ID"] == "<orig-1@shop.example>"


# -- attachments ---------------------------------------------------------------------------------


def test_attachment_names_rfc2231_rfc2047_path_traversal_and_unnamed():
    parsed = load("attachments_rfc2231.eml")

    names = [attachment.filename for attachment in parsed.attachments]
    assert names == ["€ rates über.pdf", "Köln Bericht.xls", "passwd", "attachment-4.bin"]
    assert parsed.attachments[0].payload == b"%PDF-1.4\n"
    assert all(attachment.disposition == "attachment" for attachment in parsed.attachments)
    assert parsed.text == "See attached."


def test_second_text_part_becomes_an_attachment_not_lost():
    raw = (
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\nfirst\n--b\nContent-Type: text/plain\n\nsecond\n--b--\n"
    )
    parsed = parse_message(raw)

    assert parsed.text == "first"
    assert [attachment.payload for attachment in parsed.attachments] == [b"second"]


# -- headers, addresses, ids ---------------------------------------------------------------------


def test_raw_8bit_headers_groups_and_garbage_addresses():
    parsed = load("eight_bit_headers.eml")

    assert parsed.sender == Address("Jürgen Müller", "juergen@example.de")
    assert parsed.subject == "Grüße aus Köln"  # raw latin-1 in the header
    assert parsed.to == [Address("Support équipe", "support@mailroom.test")]  # normalised case
    assert parsed.cc == [
        Address("Ann", "ann@example.com"),
        Address(None, "ben@example.com"),
        Address(None, "carol@example.com"),
    ]
    assert any("undisclosed-recipients" in defect for defect in parsed.defects)
    assert any("not an address at all" in defect for defect in parsed.defects)
    assert parsed.date is None  # "not a date"


def test_message_ids_are_unbracketed_unfolded_and_deduplicated():
    parsed = load("eight_bit_headers.eml")

    assert parsed.message_id == "folded-id@example.de"
    assert parsed.in_reply_to == ["parent@example.com"]
    assert parsed.references == ["root@example.com", "parent@example.com"]


def test_message_id_without_brackets_is_accepted():
    parsed = parse_message(b"Message-ID: bare-id@example.com\nIn-Reply-To: other@example.com\n\nx")

    assert parsed.message_id == "bare-id@example.com"
    assert parsed.in_reply_to == ["other@example.com"]


def test_broken_encoded_words_decode_as_well_as_possible():
    parsed = load("broken_encoded_words.eml")

    assert parsed.sender.name == "😂"
    assert parsed.subject.startswith("é€ split: ")  # whitespace between encoded words dropped
    assert "日本語" in parsed.subject  # a character split across two encoded words
    assert "café" in parsed.subject  # unknown charset: best effort
    assert parsed.subject.endswith("no padding")  # base64 without padding
    assert any("x-bogus" in defect for defect in parsed.defects)


def test_header_injection_via_encoded_newline_is_flattened():
    parsed = parse_message(b"Subject: =?utf-8?q?hello=0D=0ABcc:_victim@example.com?=\n\nx")

    assert "\n" not in parsed.subject and "\r" not in parsed.subject
    assert parsed.subject == "hello Bcc: victim@example.com"


def test_from_with_only_a_name_keeps_the_name_without_inventing_an_address():
    parsed = parse_message(b"From: John Doe\nSubject: x\n\nbody")

    assert parsed.sender == Address("John Doe", None)


def test_missing_headers_give_empty_values_and_no_error():
    parsed = load("missing_headers.eml")

    assert parsed.message_id is None
    assert (parsed.sender, parsed.subject, parsed.date, parsed.to) == (None, "", None, [])
    assert "nobody said who sent it" in parsed.text
    assert "missing Message-ID" in parsed.defects


# -- charsets ------------------------------------------------------------------------------------

SAMPLES = [
    ("iso-8859-2", "Zażółć gęślą jaźń"),
    ("windows-1251", "Привет, как дела?"),
    ("windows-1252", "Café “quoted” – dash"),
    ("iso-2022-jp", "日本語のメールです"),
    ("gb2312", "你好，世界"),
    ("gbk", "你好，世界"),
    ("gb18030", "你好，世界"),
    ("big5", "繁體中文郵件"),
    ("koi8-r", "Привет мир"),
    ("shift_jis", "こんにちは世界"),
    ("euc-kr", "안녕하세요 세계"),
]


@pytest.mark.parametrize(("charset", "text"), SAMPLES)
def test_declared_charsets_decode(charset, text):
    raw = simple(text.encode(charset), content_type=f"text/plain; charset={charset}".encode())

    parsed = parse_message(raw)

    assert parsed.text == text
    assert parsed.defects == []


def test_gb2312_label_with_gbk_only_characters_still_decodes():
    text = "镕基"  # 镕 is in GBK but not GB2312: mailers label such text gb2312 anyway
    raw = simple(text.encode("gbk"), content_type=b"text/plain; charset=gb2312")

    assert parse_message(raw).text == text


def test_encoded_word_subject_in_cjk_charset():
    raw = b"Subject: =?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=\n\nx"

    assert parse_message(raw).subject == "日本語"


def test_mislabelled_and_unknown_charsets_fall_back_with_a_defect():
    parsed = load("mislabelled_charsets.eml")

    assert parsed.text == "Café crème €"  # UTF-8 labelled iso-8859-1
    assert "Café € crème brûlée" in parsed.html  # unknown label, windows-1252 bytes
    assert any("iso-8859-1" in defect and "utf-8" in defect for defect in parsed.defects)
    assert any("x-unknown-charset" in defect for defect in parsed.defects)


def test_invalid_utf8_body_is_decoded_with_a_defect():
    raw = simple("naïve café ".encode() + b"\xe2\x82 broken", content_type=b"text/plain; charset=utf-8")

    parsed = parse_message(raw)

    assert parsed.text == "naïve café \ufffd broken"  # one truncated character, the rest intact
    assert any("utf-8" in defect for defect in parsed.defects)


def test_non_text_codec_names_are_never_used():
    raw = simple(b"eJzLSM3JyVcozy/KSQEAGgQEXQ==", content_type=b"text/plain; charset=base64")

    parsed = parse_message(raw)

    assert parsed.text == "eJzLSM3JyVcozy/KSQEAGgQEXQ=="
    assert any("base64" in defect for defect in parsed.defects)


def test_html_charset_from_meta_when_mime_has_none():
    html = '<meta charset="windows-1251"><p>Привет</p>'
    raw = simple(html.encode("windows-1251"), content_type=b"text/html")

    assert "Привет" in parse_message(raw).html


# -- malformed MIME ------------------------------------------------------------------------------


def test_multipart_without_boundary_parameter_still_shows_the_text():
    parsed = load("malformed_no_boundary.eml")

    assert parsed.text == "The customer's text must still be visible."
    assert parsed.defects


def test_stray_line_in_header_block_does_not_turn_the_message_into_raw_mime():
    parsed = load("malformed_structure.eml")

    assert parsed.text == "Hello from a broken message"  # base64 with trailing junk
    assert parsed.html.startswith("<p>Hello")  # unterminated last part
    assert "dropped a malformed line from the header block" in parsed.defects


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x01\x02",
        b"Content-Type: multipart/mixed; boundary=\n\n--\n--\n",
        b"Content-Type: text/plain; charset=\xff\xfe\n\n\xff",
        b"Content-Type: ;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;\n\nx",
        b"Content-Disposition: attachment; filename*0*=bogus''%ZZ; filename*1=x\n"
        b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n!!!!",
        b'From: <<<@@@>>>, "unterminated\nTo: ,,,;;;:::\nDate: Mon, 99 Foo 99999 99:99:99 +9999\n\nx',
        b"Content-Type: message/rfc822\n\n",
        b'Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain; charset="a\x00b"\n\n\xff\n--x--',  # noqa: E501
        b"Content-Type: multipart/related; boundary=r\n\n--r\nContent-Type: image/gif\n\n--r--",
    ],
)
def test_garbage_never_raises(raw):
    parsed = parse_message(raw)

    assert isinstance(parsed.subject, str)
    assert isinstance(parsed.attachments, list)


# -- limits --------------------------------------------------------------------------------------


def nested_multipart(depth: int) -> bytes:
    opening = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n" for i in range(depth))
    closing = "".join(f"\n--b{i}--" for i in reversed(range(depth)))
    return f"From: a@example.com\n{opening}Content-Type: text/plain\n\ndeep{closing}\n".encode()


def nested_messages(depth: int) -> bytes:
    return ("Content-Type: message/rfc822\n\n" * depth + "Subject: inner\n\nbody\n").encode()


def many_parts(count: int) -> bytes:
    parts = "".join(f"--p\nContent-Type: text/plain\n\npart {i}\n" for i in range(count))
    return f"Content-Type: multipart/mixed; boundary=p\n\n{parts}--p--\n".encode()


def test_nesting_within_the_limit_is_parsed():
    assert parse_message(nested_multipart(10)).text == "deep"


@pytest.mark.parametrize("bomb", [nested_multipart(30), nested_messages(30)])
def test_nesting_beyond_the_limit_is_refused_with_a_reason(bomb):
    with pytest.raises(MessageTooComplex, match="nesting"):
        parse_message(bomb)


@pytest.mark.parametrize("bomb", [nested_multipart(5000), nested_messages(5000)])
def test_deep_nesting_bomb_is_refused_fast(bomb):
    started = time.monotonic()
    with pytest.raises(MessageTooComplex):
        parse_message(bomb)
    assert time.monotonic() - started < 2


def test_huge_part_count_is_refused_fast():
    started = time.monotonic()
    with pytest.raises(MessageTooComplex, match="parts"):
        parse_message(many_parts(50_000))
    assert time.monotonic() - started < 2


def test_part_count_limit_is_configurable():
    assert len(parse_message(many_parts(40)).attachments) == 39
    with pytest.raises(MessageTooComplex, match="more than 20 MIME parts"):
        parse_message(many_parts(40), ParseLimits(max_parts=20))


def test_time_budget_is_enforced():
    with pytest.raises(MessageTooComplex, match="time"):
        parse_message(many_parts(200), ParseLimits(max_seconds=0.0))


def test_huge_text_body_is_truncated_with_a_defect():
    parsed = parse_message(simple(b"a" * 5000), ParseLimits(max_text_chars=1000))

    assert len(parsed.text) == 1000
    assert any("truncated" in defect for defect in parsed.defects)
