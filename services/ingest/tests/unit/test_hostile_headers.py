"""What fuzzing found in the parse → analyse path (fuzz/regressions/), unit by unit: the header factory
that bounds what a header costs (and real mail's long headers, read as before), the screen of the
message's parameters, an attached `.eml` parsed the same way, forward detection's readers of hostile
headers and bodies, and over-long Message-IDs."""

from __future__ import annotations

import base64
import email.message
import os
import sys
import time
import traceback
import urllib.parse
from email.headerregistry import ContentTypeHeader, UnstructuredHeader
from email.parser import BytesParser

import pytest

from ingest.domain import forwards, parsing
from ingest.domain.analysis import AnalysisSettings, analyse
from ingest.domain.model import Address, ParseLimits
from ingest.domain.parsing import MessageTooComplex, parse_message, parse_message_ids

# What one of these inputs may cost, in CPU seconds (the hostile shapes took 7-60 s before).
BUDGET = 1.0

NAME = "Отчёт о проделанной работе за третий квартал 2024 года — финальная версия для руководства (согласовано).pdf"
_UTF8 = NAME.encode()
# Gmail: RFC 2047 words in a quoted parameter, one per folded line
GMAIL_WORDS = "\r\n ".join(f"=?UTF-8?B?{base64.b64encode(_UTF8[i:i + 30]).decode()}?="
                            for i in range(0, len(_UTF8), 30))
# Thunderbird: RFC 2231 continuations, percent-encoded
RFC2231_CONTINUED = ";\r\n ".join(
    f"filename*{n}*={'UTF-8' + chr(39) * 2 if n == 0 else ''}{urllib.parse.quote(_UTF8[i:i + 40])}"
    for n, i in enumerate(range(0, len(_UTF8), 40)))
PDF = base64.encodebytes(b"%PDF-1.4 not really" * 20).decode().replace("\n", "\r\n")
BOUNDARY = "----=_NextPart_000_0012_01DA1234.56789ABC_" + "x" * 28


def message(*parts: str, subject: str = "Report", content_type_extra: str = "") -> bytes:
    body = "".join(f"--{BOUNDARY}\r\n{part}\r\n" for part in parts) + f"--{BOUNDARY}--\r\n"
    return ("From: Alice <alice@example.org>\r\nTo: support@mailroom.test\r\n"
            f"Subject: {subject}\r\nMessage-ID: <m1@example.org>\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/mixed;\r\n boundary="{BOUNDARY}"{content_type_extra}\r\n\r\n'
            f"preamble\r\n{body}").encode()


TEXT_PART = "Content-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n"


def cpu(function, *args):
    started = time.process_time()
    result = function(*args)
    return result, time.process_time() - started


# -- the header factory ---------------------------------------------------------------------------


def factory():
    return parsing._message_policy().header_factory


def unstructured(header) -> bool:
    return isinstance(header, UnstructuredHeader) and not isinstance(header, parsing._VerbatimHeader)


def test_a_short_header_is_structured_and_built_once_per_tree():
    headers = factory()
    header = headers("Content-Type", "text/plain; charset=utf-8")
    assert isinstance(header, ContentTypeHeader) and header.params["charset"] == "utf-8"
    assert headers("Content-Type", "text/plain; charset=utf-8") is header


def test_a_long_or_unparseable_value_becomes_an_unstructured_header():
    headers = factory()
    long_value = 'text/plain; name="' + '"' * 300
    assert unstructured(headers("Content-Type", long_value))  # 50,000 '"' took 10 s
    # the stdlib's address grammar raises IndexError on an encoded word that decodes to nothing
    empty_word = headers("Resent-From", "=?iso-2022-jp?b?GyRC?=")
    assert unstructured(empty_word) and not hasattr(empty_word, "addresses")
    # nested comments: the grammar recurses per '(' (300 were a RecursionError in the service)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(traceback.extract_stack()) + 100)
    try:
        nested = headers("Resent-From", "(" * 200 + "a@b.example")
    finally:
        sys.setrecursionlimit(limit)
    assert unstructured(nested) and str(nested) == "(" * 200 + "a@b.example"


def test_a_very_long_value_is_kept_as_written():
    headers = factory()
    words = "=?utf-8?q?a?= " * 2000  # the unstructured grammar copies the rest of the value per word
    header, seconds = cpu(headers, "Subject", words)
    assert isinstance(header, parsing._VerbatimHeader) and str(header) == words and seconds < 0.1
    assert header.name == "Subject"


def test_past_the_trees_budget_long_values_are_kept_as_written():
    headers = factory()
    value = "=?utf-8?q?x?= " * 250
    for index in range(parsing.MAX_UNSTRUCTURED_CHARS_PER_TREE // len(value)):
        header = headers("X-Long", f"{index} {value}")
        assert unstructured(header) and str(header).startswith(f"{index} xxxx")
    header = headers("X-Long", f"last {value}")
    assert isinstance(header, parsing._VerbatimHeader) and str(header) == f"last {value}"
    assert unstructured(factory()("X-Long", f"last {value}"))  # the budget is one tree's


# Real mail's long Content-Type/-Disposition (over 256 characters): read as the structured headers
# read them. The parameters come from compat32's string helpers, which work on str() of any header.
REAL_LONG_PARTS = {
    "gmail": (f'Content-Type: application/pdf;\r\n name="{GMAIL_WORDS}"\r\n'
              f'Content-Disposition: attachment;\r\n filename="{GMAIL_WORDS}"\r\n'
              f"Content-Transfer-Encoding: base64\r\nContent-ID: <f_lx1>\r\n\r\n{PDF}"),
    "thunderbird": (f"Content-Type: application/pdf;\r\n {RFC2231_CONTINUED.replace('filename', 'name')}\r\n"
                    f"Content-Disposition: attachment;\r\n {RFC2231_CONTINUED}\r\n"
                    f"Content-Transfer-Encoding: base64\r\n\r\n{PDF}"),
    "apple": (f'Content-Type: application/pdf;\r\n\tx-unix-mode=0644;\r\n\tname="{GMAIL_WORDS}"\r\n'
              f"Content-Disposition: attachment;\r\n\tfilename*=utf-8''{urllib.parse.quote(_UTF8)}\r\n"
              f"Content-Transfer-Encoding: base64\r\n\r\n{PDF}"),
    "outlook": ("Content-Type: application/pdf;\r\n\tname=\"" + NAME + "\"\r\n"
                "Content-Description: " + NAME + "\r\n"
                "Content-Disposition: attachment;\r\n\tfilename=\"" + NAME + "\"; size=260;\r\n"
                '\tcreation-date="Mon, 07 Oct 2024 10:00:00 GMT";\r\n'
                '\tmodification-date="Mon, 07 Oct 2024 10:00:00 GMT"\r\n'
                f"Content-Transfer-Encoding: base64\r\n\r\n{PDF}"),
}


def longest_content_header(part: str) -> int:
    headers = BytesParser(policy=parsing._message_policy()).parsebytes(part.encode(), headersonly=True)
    return max(len(value) for _name, value in headers.raw_items())


@pytest.mark.parametrize("client", sorted(REAL_LONG_PARTS))
def test_real_long_attachment_headers_give_the_filename_and_the_type(client):
    part = REAL_LONG_PARTS[client]
    assert longest_content_header(part) > parsing.MAX_STRUCTURED_HEADER_CHARS
    parsed = parse_message(message(TEXT_PART, part))

    [attachment] = parsed.attachments
    assert (attachment.filename, attachment.content_type, attachment.disposition) == (NAME, "application/pdf",
                                                                                       "attachment")
    assert attachment.payload.startswith(b"%PDF-1.4") and parsed.text == "See attached.\n"


def test_unquoted_rfc2047_words_in_a_long_name_are_read_too():
    # the structured grammar dropped this name (the attachment was "attachment-1.pdf")
    part = (f"Content-Type: application/pdf; name={GMAIL_WORDS}\r\nContent-Transfer-Encoding: base64"
            f"\r\n\r\n{PDF}")
    [attachment] = parse_message(message(TEXT_PART, part)).attachments
    assert attachment.filename == NAME


def test_a_long_multipart_content_type_keeps_its_boundary_and_charset():
    extra = ';\r\n type="text/plain"; charset="utf-8"; x-apple-part-url="' + "y" * 200 + '"'
    text = ('Content-Type: text/plain; charset="iso-8859-1"; format=flowed; delsp=yes; x-mac-type="54455854";'
            ' x-apple-part-url="' + "a" * 160 + '"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9\r\n')
    parsed = parse_message(message(text, REAL_LONG_PARTS["outlook"], content_type_extra=extra))

    assert parsed.text == "Café\n"
    assert [attachment.filename for attachment in parsed.attachments] == [NAME]
    assert not any("boundary" in defect for defect in parsed.defects)


def test_many_parts_with_long_hostile_headers_stay_cheap():
    # 480 parts whose Content-Type, -Disposition and -Transfer-Encoding carry 1,000 '"': 4.7 s before
    filler = '"' * 1000
    parts = [f"Content-Type: application/x-{n}; x={filler}\r\nContent-Disposition: attachment; y={filler}\r\n"
             f"Content-Transfer-Encoding: {filler}\r\n\r\nbody {n}\r\n" for n in range(480)]
    parsed, seconds = cpu(parse_message, message(*parts))
    assert len(parsed.attachments) == 480 and seconds < BUDGET


# -- a multipart without a boundary parameter ------------------------------------------------------


def test_a_multipart_without_boundary_keeps_the_8bit_text_of_its_parts():
    raw = ("From: a@b.example\nSubject: s\nContent-Type: multipart/alternative\n\n--xyz\n"
           "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße aus Köln\n--xyz--\n")
    parsed = parse_message(raw.encode())
    assert parsed.text == "Grüße aus Köln"  # was "Gr����e aus K��ln": get_payload() replaced each byte
    assert "multipart without boundary parameter, boundary taken from the body" in parsed.defects


def test_a_boundary_recovered_from_the_body_is_recovered_once():
    # from fuzzing: `multipart/mixed(` kept its `(` in the recovered header, which made the new boundary a
    # comment: recovered at every level to the depth limit, each 8-bit byte tripled on the way (195 bytes: 40 s)
    raw = (b"From: a@b.example\nSubject: s\nContent-Type: multipart/mixed(; boundary=b1\n\n--b1\n"
           b"Content-Type: text/plain; charset=utf-8\n\nCaf\xc3\xa9\n"
           b"--b1\nContent-Type: message/r\xe6c822\n\nFrom: x\n--b1--\n")
    parsed, seconds = cpu(parse_message, raw)
    assert parsed.text == "Café" and len(parsed.attachments) == 1 and seconds < BUDGET
    # a boundary that does not work in a header either (`"` is not allowed in one): the body as text
    unusable = b"From: a@b.example\nContent-Type: multipart/mixed\n\n--b\"1\nContent-Type: text/plain\n\nx\n--b\"1--\n"
    parsed = parse_message(unusable)
    assert parsed.text.startswith('--b"1') and "multipart without usable boundary, shown as text" in parsed.defects


# -- the serialised attached message --------------------------------------------------------------


def test_an_attached_message_is_serialised_with_the_bounded_factory():
    inner = ('From: Bob <bob@example.net>\r\nSubject: inner\r\nContent-Type: text/plain; x="'
             + '"' * 40_000 + '\r\n\r\nhello\r\n')
    raw = message(TEXT_PART, f"Content-Type: message/rfc822\r\n\r\n{inner}", subject="Fwd: inner")
    parsed, seconds = cpu(parse_message, raw)  # 42 s when the generator parsed that Content-Type again
    [attachment] = parsed.attachments
    assert attachment.filename == "inner.eml" and attachment.payload.startswith(b"From: Bob <bob@example.net>\r\n")
    assert seconds < BUDGET


# -- the screen ----------------------------------------------------------------------------------


def parameter_heavy(parts: int, per_header: int) -> bytes:
    params = "".join(f"; p{n}=v" for n in range(per_header))
    return message(*[f"Content-Type: text/plain{params}\r\n\r\nx\r\n" for _ in range(parts)])


def test_the_parameters_of_all_content_headers_are_counted_together():
    raw = parameter_heavy(6, 990)  # each header under the 1,000 per field, 5,940 in all

    with pytest.raises(MessageTooComplex, match="more than 5000 parameters in the Content-\\* headers"):
        parse_message(raw)
    parsed = parse_message(raw, ParseLimits(max_message_params=10_000))
    assert len(parsed.attachments) == 5
    parse_message(parameter_heavy(5, 990))  # 4,950: under the cap


def test_the_message_cap_is_configurable(monkeypatch, tmp_path):
    from ingest.settings import load

    for name in [name for name in os.environ if name.startswith("INGEST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MAILROOM_VAR_DIR", str(tmp_path))
    assert load(mailboxes=False).limits.max_message_params == 5000 == ParseLimits().max_message_params
    monkeypatch.setenv("INGEST_MAX_MESSAGE_PARAMS", "20000")
    assert load(mailboxes=False).limits.max_message_params == 20000


# -- forward detection ----------------------------------------------------------------------------

SETTINGS = AnalysisSettings(own_addresses=frozenset({"support@mailroom.test"}))


def eml_attachment(inner: str) -> bytes:
    payload = base64.encodebytes(inner.encode()).decode().replace("\n", "\r\n")
    return message(TEXT_PART, "Content-Type: application/octet-stream; name=question.eml\r\n"
                              "Content-Disposition: attachment; filename=question.eml\r\n"
                              f"Content-Transfer-Encoding: base64\r\n\r\n{payload}", subject="Fwd: question")


def test_an_eml_attachment_is_parsed_like_mail():
    inner = ('From: "Carol" <carol@customer.example>\r\nSubject: question\r\nContent-Type: text/plain; x="'
             + '"' * 40_000 + '\r\n\r\nWhere is my order?\r\n')
    analysis, seconds = cpu(analyse, eml_attachment(inner), SETTINGS)  # 60 s with a plain BytesParser
    assert analysis.forward.original_sender.email == "carol@customer.example"
    assert analysis.forward.detected_by == "rfc822_attachment"
    assert seconds < BUDGET


def test_an_eml_attachment_over_the_limits_is_not_read_for_a_forward():
    params = "".join(f"; p{n}=v" for n in range(1500))
    inner = f"From: carol@customer.example\r\nSubject: question\r\nContent-Type: text/plain{params}\r\n\r\nhi\r\n"
    analysis = analyse(eml_attachment(inner), SETTINGS)  # the outer message is fine: not refused
    assert analysis.forward is None
    assert [attachment.filename for attachment in analysis.parsed.attachments] == ["question.eml"]


def parsed_headers(headers: str) -> email.message.Message:
    return BytesParser(policy=parsing._message_policy()).parsebytes(headers.encode() + b"\r\n\r\nbody\r\n")


def test_a_from_with_thousands_of_nested_comments_is_read_without_recursion():
    # the structured grammar and then compat32's getaddresses (its comment parser) recurse per '('
    msg = parsed_headers("From: " + "(" * 2000 + "carol@customer.example")
    assert forwards._header_mailbox(msg, "From") == Address(None, "carol@customer.example")
    resent = parsed_headers("Resent-From: " + "(" * 2000 + "\r\nFrom: Carol <carol@customer.example>")
    assert forwards._header_mailbox(resent, "Resent-From") is None
    assert forwards._header_mailbox(resent, "From") == Address("Carol", "carol@customer.example")


def test_broken_and_countless_encoded_words_decode_best_effort():
    assert forwards._decode_words("=??b?A?=") == "=??b?A?="  # email.header raised HeaderParseError
    assert forwards._decode_words("=?utf-8?q?J=C3=B6rg?= =?utf-8?q?_M=C3=BCller?=") == "Jörg Müller"
    words = "=?utf-8?q?a?= " * 70_000
    decoded, seconds = cpu(forwards._decode_words, words)  # email.header.decode_header: 7 s (quadratic)
    assert decoded.startswith("aaaa") and seconds < BUDGET
    assert forwards.parse_from_value("=??b?A?= <a@b.example>").email == "a@b.example"


@pytest.mark.parametrize("body", [
    "From: Sa\udcff\udcffm Agent <samm: Sat\n" * 5000,  # from fuzzing: 1.2 MB of these took 27 s
    ("From: " + "x" * 5000 + "\n") * 100,
    "From: x [mailto:\n" * 5000,
    ("From: a (\n" + "<b\n" * 38) * 200,  # wrapped values: each joined line made the value longer
])
def test_a_body_of_from_lines_is_read_once_per_line(body):
    # every `From:` line starts a header block read up to 40 lines on, and each line's label, separator
    # and run-together split were computed again for every block that read it
    raw = ("From: f@example.org\nSubject: Fwd: x\nContent-Type: text/plain; charset=utf-8\n\n" + body)
    parsed = parse_message(raw.encode("utf-8", "surrogateescape"))
    info, seconds = cpu(forwards.detect_forward, parsed)
    assert info is None and seconds < BUDGET


def test_a_forward_block_below_many_from_lines_is_still_found():
    body = "FYI\n\n---------- Forwarded message ---------\nFrom: Carol <carol@customer.example>\n" \
           "Date: Mon, 7 Oct 2024\nSubject: question\nTo: f@example.org\n\n" + "From: nobody\n" * 3000
    parsed = parse_message(("From: f@example.org\nSubject: Fwd: question\n\n" + body).encode())
    info = forwards.detect_forward(parsed)
    assert info.original_sender == Address("Carol", "carol@customer.example")
    assert (info.original_subject, info.detected_by) == ("question", "text_block:gmail")


@pytest.mark.parametrize("charset", ["undefined", "idna", "x-unknown", "rot13", "utf-8"])
def test_the_text_of_an_attached_message_decodes_whatever_its_charset(charset):
    msg = parsed_headers(f"From: a@b.example\r\nContent-Type: text/plain; charset={charset}")
    assert forwards._message_text(msg) == ("body\r\n", "text")


# -- message ids ----------------------------------------------------------------------------------


def test_a_message_id_longer_than_998_characters_is_not_an_id():
    longest = "x" * 986 + "@example.org"
    assert len(longest) == 998
    assert parse_message_ids([f"<{longest}>", "<{}@example.org>".format("y" * 990)]) == [longest]
    assert parse_message_ids(["<{}@example.org>".format("z" * 1200), "<ok@example.org>"]) == ["ok@example.org"]
    parsed = parse_message(b"From: a@b.example\r\nMessage-ID: <" + b"z" * 1200 + b"@example.org>\r\n\r\nhi\r\n")
    assert parsed.message_id is None
    assert analyse(b"From: a@b.example\r\nMessage-ID: <" + b"z" * 1200 + b"@example.org>\r\n\r\nhi\r\n",
                   SETTINGS).message_id.endswith("@generated.mailroom.invalid")
